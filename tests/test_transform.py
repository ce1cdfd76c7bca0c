"""The pure transform: recorded Graph JSON in, pst-utils rows out. No network."""

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fund_mail.archive.rows import (
    AttachRow,
    email_time,
    graph_time,
    is_windows_safe,
    local_time,
    message_row,
    parse_datetime_arg,
    parse_graph_time,
    phy_file_name,
    safe_extension,
)
from fund_mail.graph import attachments

PAGE = json.loads((Path(__file__).parent / "fixtures" / "messages_page.json").read_text("utf-8"))
SEOUL = ZoneInfo("Asia/Seoul")
SENT_ITEMS = PAGE["value"][1]["parentFolderId"]


def row(index: int, folder: str = "Inbox", sent_id: str | None = SENT_ITEMS, notes=()):
    return message_row(
        PAGE["value"][index],
        folder_path=folder,
        mailbox="fund@example.com",
        sent_folder_id=sent_id,
        tz=SEOUL,
        notes=list(notes),
    )


def test_received_message_maps_every_column():
    assert row(0, "Inbox/Funds")._asdict() == {
        "email_id": "AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0Ad3Jydmz_5UeQs9w5dBNQHwABmaTPWAAA",
        "subject": "11월 기준가 확인 요청",
        "sender_address": "minjun.kim@partner-am.example",
        "sender_name": "Kim Minjun",
        "from_address": "minjun.kim@partner-am.example",
        "from_name": "Kim Minjun",
        "to_recipients": "fund@example.com, seoyeon.lee@example.com",
        "cc_recipients": "desk@trustee-bank.example",
        "email_time": "2025-06-30 04:47:45",
        "kst_time": "2025-06-30 13:47:45",
        "content": "<html><body><p>기준가 확인 부탁드립니다.</p></body></html>",
        "msg_kind": "receive",
        "folder_path": "Inbox/Funds",
        "note": "",
    }


def test_send_on_behalf_keeps_sender_and_from_apart_and_is_sent():
    sent = row(1, "Sent Items")
    assert (sent.sender_address, sent.sender_name, sent.from_address, sent.from_name) == (
        "assistant@example.com",
        "Assistant",
        "fund@example.com",
        "Fund Ops",
    )
    assert sent.msg_kind == "sent"


def test_message_from_the_mailbox_is_sent_even_outside_sent_items():
    assert row(1, "Inbox", sent_id="another-folder").msg_kind == "sent"


def test_message_in_sent_items_is_sent_whoever_the_author():
    message = {**PAGE["value"][0], "parentFolderId": SENT_ITEMS}
    r = message_row(
        message,
        folder_path="Sent Items",
        mailbox="fund@example.com",
        sent_folder_id=SENT_ITEMS,
        tz=SEOUL,
    )
    assert r.msg_kind == "sent"


def test_missing_from_sender_subject_and_recipients_give_empty_strings():
    r = row(2)
    assert r.subject == "" and r.from_address == "" and r.sender_name == ""
    assert r.to_recipients == "" and r.content == ""
    assert r.msg_kind == "receive"


def test_local_day_boundary_in_kst():
    # 14:59:59Z is 23:59:59 KST on the 30th; 15:00:00Z is midnight of the 1st.
    assert row(2).kst_time == "2025-06-30 23:59:59"
    assert row(1).kst_time == "2025-07-01 00:00:00"


def test_notes_are_joined():
    assert row(0, notes=["a", "b"]).note == "a; b"


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2021, 7, 19, 7, 50, 53, 360111, tzinfo=UTC), "2021-07-19 07:50:53.360111"),
        (datetime(2021, 7, 19, 7, 50, 53, tzinfo=UTC), "2021-07-19 07:50:53"),
        (datetime(2021, 7, 19, 16, 50, 53, tzinfo=SEOUL), "2021-07-19 07:50:53"),
    ],
)
def test_email_time_is_utc_with_fraction_only_when_nonzero(moment, text):
    assert email_time(moment) == text


def test_graph_times_round_trip():
    moment = parse_graph_time("2025-06-30T04:47:45Z")
    assert moment == datetime(2025, 6, 30, 4, 47, 45, tzinfo=UTC)
    assert graph_time(moment) == "2025-06-30T04:47:45Z"
    assert parse_graph_time("2025-06-30T13:47:45+09:00") == moment
    assert local_time(moment, SEOUL) == "2025-06-30 13:47:45"


def test_datetime_arguments_are_local_unless_they_carry_an_offset():
    assert parse_datetime_arg("2025-06-30", SEOUL) == datetime(2025, 6, 29, 15, tzinfo=UTC)
    assert parse_datetime_arg("2025-06-30 09:00", SEOUL) == datetime(2025, 6, 30, tzinfo=UTC)
    assert parse_datetime_arg("2025-06-30T00:00Z", SEOUL) == datetime(2025, 6, 30, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_datetime_arg("30/06/2025", SEOUL)


def test_attachment_plan_from_recorded_page():
    plan = attachments.plan(PAGE["value"][0])
    assert [j.attachment["name"] for j in plan.jobs] == [
        "기준가_2025-06.pdf",
        "FW: Subscription agreement",
    ]
    assert plan.jobs[0].phy_file_name.endswith(".pdf")
    assert plan.jobs[1].phy_file_name.endswith(".eml")
    assert plan.notes == ["link-only attachment (not downloadable): Q3 letter.docx"]
    plan.jobs[0].size = 42000
    assert plan.rows("2025_06_30/attach")[0] == AttachRow(
        save_folder="2025_06_30/attach",
        org_file_name="기준가_2025-06.pdf",
        phy_file_name=plan.jobs[0].phy_file_name,
        file_size=42000,
    )


HOSTILE_NAMES = [
    "../../etc/passwd", "..\\..\\boot.ini", "CON", "NUL.txt", "com1.pdf", "a:b*c?.pdf",
    "x" * 300 + ".pdf", "보고서 📈.xlsx", "", None, "trailing.", "name.EXE ", ".hidden",
    "report.tar.gz", "weird.ext\u202ecod", 'quote".pdf', "tab\tname.doc",
]  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_physical_names_are_safe_short_and_deterministic(name):
    kind = "#microsoft.graph.fileAttachment"
    first = phy_file_name("message-1", "attachment-1", name, kind)
    assert first == phy_file_name("message-1", "attachment-1", name, kind)
    assert is_windows_safe(first) and len(first) <= 31
    assert "/" not in first and "\\" not in first and ".." not in first


def test_physical_names_differ_per_attachment_and_message():
    kind = "#microsoft.graph.fileAttachment"
    names = {phy_file_name(m, a, "same.pdf", kind) for m in "ab" for a in "xy"}
    assert len(names) == 4


@pytest.mark.parametrize(
    ("name", "ext"),
    [
        ("a.PDF", ".pdf"),
        ("noext", ""),
        (".bashrc", ""),
        ("a.tar.gz", ".gz"),
        ("a.x y", ""),
        ("a.ｐｄｆ", ".pdf"),
        ("a." + "b" * 11, ""),
    ],
)
def test_safe_extension(name, ext):
    assert safe_extension(name, "#microsoft.graph.fileAttachment") == ext


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("ok.pdf", True),
        ("CON", False),
        ("nul.txt", False),
        ("a<b", False),
        ("a.", False),
        ("x" * 256, False),
        ("LPT9.doc", False),
        ("COM10.doc", True),
    ],
)
def test_windows_name_rules(name, safe):
    assert is_windows_safe(name) is safe
