"""RFC 822 test messages, built with the standard library like a mail client would."""

from __future__ import annotations

import base64
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

KOREAN = "펀드 운용 보고서"


def message(
    subject: str = "hello",
    *,
    sender: str = "Kim <kim@example.com>",
    to: str = "fund@example.com",
    when=None,
    body: str = "<p>body</p>",
    attachments: list[tuple[str, bytes, str]] = (),
    msgid: str | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = to
    msg["Message-ID"] = msgid or make_msgid(domain="example.com")
    if when is not None:
        msg["Date"] = format_datetime(when)
    msg.set_content("plain body")
    msg.add_alternative(body, subtype="html")
    for name, data, mime_type in attachments:
        main, sub = mime_type.split("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return bytes(msg)


def raw_subject_message(subject_bytes: bytes, charset: str = "utf-8") -> bytes:
    """A message whose Subject is raw 8-bit bytes, as some Korean clients still send."""
    return (
        b"From: kim@example.com\r\nTo: fund@example.com\r\nSubject: "
        + subject_bytes
        + b"\r\nMessage-ID: <"
        + base64.b16encode(subject_bytes)[:20]
        + b"@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset="
        + charset.encode()
        + b"\r\n\r\n"
        + "본문입니다".encode(charset)
        + b"\r\n"
    )


def encoded_word_subject(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="
