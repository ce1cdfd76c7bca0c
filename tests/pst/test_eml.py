"""Embedded messages as .eml, built by hand: no libpff, no fixture."""

import email
import email.policy
from datetime import UTC, datetime

from fund_mail.pst import props as p
from fund_mail.pst.eml import build_eml
from fund_mail.pst.ndb import EmbeddedAttachment, EmbeddedMessage

WHEN = datetime(2019, 6, 4, 0, 15, tzinfo=UTC)


def message(subject, attachments, **extra):
    values = {
        p.PR_SUBJECT: (0x1F, subject),
        p.PR_SENDER_NAME: (0x1F, "Kim\r\nMinsu"),
        p.PR_SENDER_EMAIL: (0x1F, "kim@fund.example"),
        p.PR_CLIENT_SUBMIT_TIME: (0x40, WHEN),
        p.PR_BODY: (0x1F, f"body of {subject}"),
        **extra,
    }
    return EmbeddedMessage(values, attachments, [])


def file_attachment(name, data):
    return EmbeddedAttachment(
        {p.PR_ATTACH_LONG_FILENAME: (0x1F, name), p.PR_ATTACH_DATA: (0x102, data)}, None
    )


def test_nested_messages_keep_their_attachments_recursively():
    inner = message("inner", [file_attachment("report.xlsx", b"\x00\x01xlsx")])
    middle = message(
        "middle\r\nline", [EmbeddedAttachment({}, inner), file_attachment("a.txt", b"a")]
    )
    mail, problems = build_eml(middle)
    assert problems == []
    parsed = email.message_from_bytes(bytes(mail), policy=email.policy.default)
    assert parsed["Subject"] == "middle line" and parsed["From"] == "Kim Minsu <kim@fund.example>"
    assert parsed["Date"].datetime == WHEN
    assert parsed.get_body(("plain",)).get_content().startswith("body of middle")
    nested, text = list(parsed.iter_attachments())
    assert text.get_filename() == "a.txt" and text.get_payload(decode=True) == b"a"
    inner_parsed = nested.get_payload()[0]
    assert inner_parsed["Subject"] == "inner"
    (xlsx,) = list(inner_parsed.iter_attachments())
    assert xlsx.get_filename() == "report.xlsx" and xlsx.get_payload(decode=True) == b"\x00\x01xlsx"


def test_unreadable_parts_are_named_with_their_path():
    broken = EmbeddedAttachment({p.PR_ATTACH_LONG_FILENAME: (0x1F, "lost.pdf")}, None)
    inner = message("inner", [broken])
    inner.problems.append("attachment 2: block 0x44 fails its CRC check")
    _, problems = build_eml(message("outer", [EmbeddedAttachment({}, inner)]))
    assert problems == [
        "attachment 1 / attachment 2: block 0x44 fails its CRC check",
        "attachment 1 / attachment 1 (lost.pdf): its data could not be read",
    ]
