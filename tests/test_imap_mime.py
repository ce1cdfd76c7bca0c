"""RFC 822 to archive rows: Korean headers in every form, body choice, attachments as on Graph."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest

from fund_mail.archive.rows import FILE_ATTACHMENT, ITEM_ATTACHMENT, message_row
from fund_mail.imap import mime
from tests.imap_mail import KOREAN, encoded_word_subject, message, raw_subject_message

RECEIVED = datetime(2026, 3, 2, 1, 2, 3, tzinfo=UTC)


def shape(raw: bytes, body_type: str = "html") -> mime.ParsedMessage:
    return mime.graph_shape(
        raw, email_id="imap:1:7:INBOX", folder="INBOX", received=RECEIVED, body_type=body_type
    )


@pytest.mark.parametrize(
    "subject_bytes, charset",
    [
        (KOREAN.encode("utf-8"), "utf-8"),  # raw 8-bit UTF-8
        (KOREAN.encode("euc-kr"), "euc-kr"),  # raw 8-bit EUC-KR
        (encoded_word_subject(KOREAN, "EUC-KR").encode(), "euc-kr"),
        (encoded_word_subject(KOREAN, "ks_c_5601-1987").encode(), "euc-kr"),  # Outlook's label
        (encoded_word_subject(KOREAN, "UTF-8").encode(), "utf-8"),
    ],
    ids=["8bit-utf8", "8bit-euc-kr", "word-euc-kr", "word-ks_c_5601", "word-utf8"],
)
def test_korean_subjects_and_bodies(subject_bytes, charset):
    parsed = shape(raw_subject_message(subject_bytes, charset))
    assert parsed.message["subject"] == KOREAN
    assert parsed.message["body"]["content"].strip() == "본문입니다"


def test_raw_euc_kr_subject_of_a_utf8_body_still_decodes():
    # The body names UTF-8, the header is EUC-KR: UTF-8 fails, cp949 reads it.
    raw = raw_subject_message(KOREAN.encode("euc-kr"), "utf-8")
    assert shape(raw).message["subject"] == KOREAN


def test_addresses_and_graph_shaped_row():
    name = encoded_word_subject("김철수", "EUC-KR")
    raw = message("Q3", sender=f"{name} <kim@example.com>", to="a@x.com, B <b@x.com>")
    parsed = shape(raw)
    row = message_row(
        parsed.message,
        folder_path="Inbox",
        mailbox="fund@example.com",
        sent_folder_id=None,
        tz=ZoneInfo("Asia/Seoul"),
    )
    assert row.email_id == "imap:1:7:INBOX"
    assert (row.from_address, row.from_name) == ("kim@example.com", "김철수")
    assert (row.sender_address, row.sender_name) == ("kim@example.com", "김철수")
    assert row.to_recipients == "a@x.com, b@x.com"
    assert row.email_time == "2026-03-02 01:02:03"
    assert row.kst_time == "2026-03-02 10:02:03"
    assert row.msg_kind == "receive"
    assert row.content.strip() == "<p>body</p>"


def test_body_type_text_prefers_plain():
    assert shape(message(), "text").message["body"] == {
        "contentType": "text",
        "content": "plain body\n",
    }


def test_file_inline_and_message_attachments():
    inner = EmailMessage()
    inner["Subject"] = "원본 메일"
    inner["From"] = "x@example.com"
    inner.set_content("inner")
    outer = EmailMessage()
    outer["Subject"] = "with parts"
    outer["From"] = "kim@example.com"
    outer.set_content("see attached")
    outer.add_alternative('<p><img src="cid:logo"></p>', subtype="html")
    outer.get_payload()[1].add_related(
        b"\x89PNG-bytes", maintype="image", subtype="png", cid="<logo>"
    )
    outer.add_attachment(
        "보고서".encode(), maintype="application", subtype="pdf", filename="보고서.pdf"
    )
    outer.add_attachment(inner)
    parsed = shape(bytes(outer))
    by_kind = {(a.kind, a.name): a for a in parsed.attachments}
    assert set(by_kind) == {
        (FILE_ATTACHMENT, "part-1.2.2.png"),
        (FILE_ATTACHMENT, "보고서.pdf"),
        (ITEM_ATTACHMENT, "원본 메일"),
    }
    assert by_kind[(FILE_ATTACHMENT, "part-1.2.2.png")].content == b"\x89PNG-bytes"
    assert by_kind[(FILE_ATTACHMENT, "보고서.pdf")].content == "보고서".encode()
    embedded = mime.parse(by_kind[(ITEM_ATTACHMENT, "원본 메일")].content)
    assert mime.header_text(embedded, "Subject") == "원본 메일"
    names = [a.phy_file_name("imap:1:7:INBOX") for a in parsed.attachments]
    assert len(set(names)) == 3 and any(n.endswith(".eml") for n in names)
    assert "<img" in parsed.message["body"]["content"]


def test_single_part_attachment_is_kept():
    raw = (
        b"From: a@example.com\r\nSubject: scan\r\nContent-Type: application/pdf; name=scan.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
    )
    parsed = shape(raw)
    assert [(a.name, a.content) for a in parsed.attachments] == [("scan.pdf", b"%PDF-")]


def test_fingerprint_is_message_id_date_and_size():
    when = datetime(2026, 1, 1, tzinfo=UTC)
    base = mime.fingerprint("<A@x>", when, 100)
    assert base == mime.fingerprint("<a@x> ", when, 100)
    assert base != mime.fingerprint("<b@x>", when, 100)
    assert base != mime.fingerprint("<A@x>", when, 101)
    assert base != mime.fingerprint("<A@x>", when.replace(second=1), 100)
