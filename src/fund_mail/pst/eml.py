"""An embedded message as a real RFC 5322 message, built with the standard library's `email`:
its headers, its text and HTML bodies, and its own attachments, recursively."""

from __future__ import annotations

import email.policy
import email.utils
from datetime import UTC
from email.message import EmailMessage

from fund_mail.pst import props as p
from fund_mail.pst import rules
from fund_mail.pst.ndb import EmbeddedMessage

POLICY = email.policy.default.clone(linesep="\r\n")


def build_eml(message: EmbeddedMessage, path: str = "") -> tuple[EmailMessage, list[str]]:
    """(the message, the parts that could not be read, each named)."""
    problems = [f"{path}{x}" for x in message.problems]
    mail = EmailMessage(policy=POLICY)
    headers = _text(message.get(p.PR_TRANSPORT_HEADERS))
    accounts = rules.send_account_pairs(
        [_text(message.get(p.PR_PRIMARY_SEND_ACCOUNT)), _text(message.get(p.PR_NEXT_SEND_ACCT))]
    )
    sender = rules.resolve_address(
        "from",
        smtp=[
            _text(message.get(p.PR_SENT_REPRESENTING_SMTP)),
            _text(message.get(p.PR_SENDER_SMTP)),
        ],
        address=_text(message.get(p.PR_SENT_REPRESENTING_EMAIL) or message.get(p.PR_SENDER_EMAIL)),
        name=_text(message.get(p.PR_SENT_REPRESENTING_NAME)),
        accounts=accounts,
        headers=rules.header_addresses(headers, "From"),
    )
    name = _text(message.get(p.PR_SENT_REPRESENTING_NAME) or message.get(p.PR_SENDER_NAME))
    mail["Subject"] = _one_line(p.strip_subject_prefix(_text(message.get(p.PR_SUBJECT))))
    if sender.address or name:
        mail["From"] = email.utils.formataddr((_one_line(name), _one_line(sender.address)))
    for header, prop in (("To", p.PR_DISPLAY_TO), ("Cc", p.PR_DISPLAY_CC)):
        if _text(message.get(prop)):
            mail[header] = _one_line(_text(message.get(prop)))
    moment, _ = rules.choose_time(
        message.get(p.PR_MESSAGE_DELIVERY_TIME),
        message.get(p.PR_CLIENT_SUBMIT_TIME),
        rules.header_date(headers),
        message.get(p.PR_CREATION_TIME),
    )
    if moment is not None:
        mail["Date"] = email.utils.format_datetime(moment.astimezone(UTC))
    if _text(message.get(p.PR_INTERNET_MESSAGE_ID)):
        mail["Message-ID"] = _one_line(_text(message.get(p.PR_INTERNET_MESSAGE_ID)))
    mail.set_content(_text(message.get(p.PR_BODY)))
    html = message.get(p.PR_HTML)
    if html:
        mail.add_alternative(_text(html), subtype="html")
    for index, attachment in enumerate(message.attachments, start=1):
        label = f"{path}attachment {index}"
        filename = _text(
            attachment.get(p.PR_ATTACH_LONG_FILENAME)
            or attachment.get(p.PR_ATTACH_FILENAME)
            or attachment.get(p.PR_DISPLAY_NAME)
        )
        if attachment.message is not None:
            inner, inner_problems = build_eml(attachment.message, f"{label} / ")
            problems += inner_problems
            mail.add_attachment(inner, filename=f"{filename or 'message'}.eml")
            continue
        data = attachment.get(p.PR_ATTACH_DATA)
        if not isinstance(data, bytes):
            problems.append(f"{label} ({filename or 'no name'}): its data could not be read")
            continue
        maintype, _, subtype = (
            _text(attachment.get(p.PR_ATTACH_MIME_TAG)) or "application/octet-stream"
        ).partition("/")
        mail.add_attachment(
            data, maintype=maintype, subtype=subtype or "octet-stream", filename=filename or None
        )
    return mail, problems


def _one_line(value: str) -> str:
    """A header value: a stored subject or name may hold line breaks, which headers cannot."""
    return " ".join(value.split())


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value) if value is not None else ""
