"""KEEP_MIME=1: each message's original MIME kept as `attach/<hash>.eml`, with a
fund_mail_attach row marked `(original message).eml`, delivered like any attachment."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, time

from fund_mail import engine_imap
from fund_mail.archive.rows import SOURCE_MESSAGE_NAME, source_message_file_name
from fund_mail.config import config_from_values
from fund_mail.emulator import file_attachment
from fund_mail.engine import deliver, run_day, run_once
from fund_mail.imap import mime
from tests.helpers import archived_rows
from tests.imap_mail import KOREAN, raw_subject_message
from tests.imap_server import admin_client, imap_values


def attach_files(data_dir) -> dict[str, bytes]:
    rows = archived_rows(data_dir, "fund_mail_attach")
    return {
        r["org_file_name"]: (data_dir / r["save_folder"] / r["phy_file_name"]).read_bytes()
        for r in rows
    }


def same_mime(kept: bytes, expected: bytes) -> bool:
    """Equal but for the multipart boundaries, which the emulator draws anew on each request."""

    def parts(raw: bytes) -> list:
        message = mime.parse(raw)
        return [(p.get_content_type(), p.get_payload(decode=True)) for p in message.walk()] + [
            message["Message-ID"]
        ]

    return parts(kept) == parts(expected)


def test_graph_keeps_the_message_value_and_delivers_it(sftp_config, graph, sftp_server, now):
    config = dataclasses.replace(sftp_config, keep_mime=True)
    run_once(config)
    message = graph.mailbox.add_message(now, attachments=[file_attachment("a.pdf", b"pdf")])
    graph.reset_log()
    result = run_once(config)
    assert result.attachments == 2
    files = attach_files(config.data_dir)
    assert same_mime(files[SOURCE_MESSAGE_NAME], message.mime())
    assert files["a.pdf"] == b"pdf"
    [row] = [
        r
        for r in archived_rows(config.data_dir, "fund_mail_attach")
        if r["org_file_name"] == SOURCE_MESSAGE_NAME
    ]
    assert row["phy_file_name"] == source_message_file_name(message.immutable_id)
    assert row["phy_file_name"].endswith(".eml") and row["file_size"] == len(message.mime())
    value_requests = [r for r in graph.records("message") if r.path.endswith("/$value")]
    assert len(value_requests) == 1, "one request per message"
    deliver(config)
    landed = {p.name for p in sftp_server.root.rglob("*.eml")}
    assert landed == {row["phy_file_name"]}


def test_graph_without_the_option_keeps_no_mime(config, graph, now):
    run_once(config)
    graph.mailbox.add_message(now)
    run_once(config)
    assert archived_rows(config.data_dir, "fund_mail_attach") == []
    assert not [r for r in graph.records() if r.path.endswith("/$value")]


def test_graph_one_day_keeps_mime_too(config, graph):
    # A fixed day: "five minutes ago" is yesterday in TIMEZONE just after local midnight.
    day = date(2025, 6, 30)
    message = graph.mailbox.add_message(datetime.combine(day, time(12), tzinfo=config.tz))
    result = run_day(dataclasses.replace(config, keep_mime=True), day)
    assert result.messages == 1
    assert same_mime(attach_files(config.data_dir)[SOURCE_MESSAGE_NAME], message.mime())


def test_imap_keeps_the_fetched_rfc822(dovecot, data_dir):
    config = config_from_values(imap_values(dovecot, data_dir, KEEP_MIME="1"))
    engine_imap.run_once(config)
    raw = raw_subject_message(KOREAN.encode("euc-kr"), "euc-kr")
    admin = admin_client(dovecot)
    try:
        admin.append("INBOX", raw)
    finally:
        admin.logout()
    assert engine_imap.run_once(config).attachments == 1
    kept = attach_files(config.data_dir)[SOURCE_MESSAGE_NAME]
    assert kept.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
