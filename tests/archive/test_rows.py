"""Rows from malformed Graph messages: empty values and a note, never an exception."""

from zoneinfo import ZoneInfo

import pytest

from fund_mail.archive.rows import message_row, received_text, unstorable_reason

GOOD = {
    "id": "AAMk-1",
    "subject": "Report",
    "sender": {"emailAddress": {"name": "A", "address": "a@example.com"}},
    "from": {"emailAddress": {"name": "A", "address": "a@example.com"}},
    "toRecipients": [{"emailAddress": {"name": "F", "address": "fund@example.com"}}],
    "receivedDateTime": "2025-06-30T04:47:45Z",
    "body": {"contentType": "html", "content": "<p>x</p>"},
}
ABSENT = object()
CASES = [
    ("from", None, "from", {"from_address": ""}),
    ("from", ABSENT, "from", {"from_address": ""}),
    ("from", "a@example.com", "from", {"from_address": ""}),
    ("sender", None, "sender", {"sender_address": ""}),
    ("receivedDateTime", None, "receivedDateTime", {"email_time": "", "kst_time": ""}),
    ("receivedDateTime", ABSENT, "receivedDateTime", {"email_time": ""}),
    ("receivedDateTime", "yesterday", "receivedDateTime", {"email_time": ""}),
    ("receivedDateTime", "0001-01-01T00:00:00+09:00", "receivedDateTime", {"email_time": ""}),
    ("subject", None, "subject", {"subject": ""}),
    ("body", None, "body", {"content": ""}),
    ("body", "plain text", "body", {"content": ""}),
    ("body", {"content": None}, "body", {"content": ""}),
    ("toRecipients", "fund@example.com", None, {"to_recipients": ""}),
    ("toRecipients", [None, {"emailAddress": None}], None, {"to_recipients": ""}),
]


@pytest.mark.parametrize(("key", "value", "named", "expected"), CASES)
def test_malformed_fields_are_stored_empty_with_a_note(key, value, named, expected):
    message = dict(GOOD)
    if value is ABSENT:
        del message[key]
    else:
        message[key] = value
    row = message_row(
        message,
        folder_path="Inbox",
        mailbox="fund@example.com",
        sent_folder_id=None,
        tz=ZoneInfo("Asia/Seoul"),
        notes=["link-only attachment (not downloadable): x"],
    )
    assert {k: getattr(row, k) for k in expected} == expected
    assert row.email_id == "AAMk-1" and row.note.startswith("link-only attachment")
    if named:
        assert f"missing in Graph's answer: {named}" in row.note
    else:
        assert "missing" not in row.note


def test_a_whole_message_has_no_missing_note():
    row = message_row(
        GOOD, folder_path="Inbox", mailbox="x@y.z", sent_folder_id=None, tz=ZoneInfo("UTC")
    )
    assert row.note == "" and row.email_time == "2025-06-30 04:47:45"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({**GOOD, "id": None}, "no id"),
        ({k: v for k, v in GOOD.items() if k != "id"}, "no id"),
        ({**GOOD, "attachments": [{"name": "x"}]}, "attachments"),
        ({**GOOD, "attachments": "x"}, "attachments"),
        ("just a string", "not a JSON object"),
        (GOOD, None),
    ],
)
def test_unstorable(message, reason):
    found = unstorable_reason(message)
    assert (found is None) if reason is None else (reason in found)


@pytest.mark.parametrize(
    ("received", "indexed"),
    [
        ("2025-06-30T04:47:45Z", "2025-06-30T04:47:45Z"),
        ("2025-06-30T04:47:45.250Z", "2025-06-30T04:47:45Z"),  # the fraction is not indexed
        ("2025-06-30T13:47:45+09:00", "2025-06-30T04:47:45Z"),  # an offset, in UTC
        ("2025-06-30T04:47:45", "2025-06-30T04:47:45Z"),  # no zone: UTC
        ("0999-01-02T03:04:05Z", "0999-01-02T03:04:05Z"),
        ("yesterday", ""),
        (None, ""),
    ],
)
def test_received_text_is_the_index_form_of_receivedDateTime(received, indexed):
    row = message_row(
        {**GOOD, "receivedDateTime": received},
        folder_path="Inbox",
        mailbox="x@y.z",
        sent_folder_id=None,
        tz=ZoneInfo("Asia/Seoul"),
    )
    assert received_text(row) == indexed
