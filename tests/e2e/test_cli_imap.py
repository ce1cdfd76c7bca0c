"""SOURCE=imap through the real commands: a Dovecot mailbox archived into the same schema,
delivered over SFTP, with XOAUTH2 sign-in from the app registration."""

from __future__ import annotations

import signal
import sqlite3
import sys
from collections import Counter
from datetime import UTC, datetime

import pytest

from fund_mail.archive.store import SCHEMA_SQL
from tests.helpers import archived_rows, run_cli
from tests.imap_mail import KOREAN, encoded_word_subject, message, raw_subject_message
from tests.imap_server import admin_client, imap_values


def write_env(path, values: dict) -> str:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return str(path)


def schema_of(db) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()


def test_imap_mailbox_archived_and_delivered(graph, dovecot, sftp_server, data_dir, tmp_path):
    # XOAUTH2: no IMAP_PASSWORD, so the app registration's token signs in.
    values = {**graph.env_values(data_dir), **imap_values(dovecot, data_dir, IMAP_PASSWORD="")}
    values.update(sftp_server.env(tmp_path / "known_hosts"))
    env = write_env(tmp_path / ".env", values)
    admin = admin_client(dovecot)
    try:
        admin.append("INBOX", message("old mail"))
        first = run_cli("fund_mail_once", "--env-file", env)
        assert first.returncode == 0, first.stderr
        assert "baseline recorded" in first.stdout

        admin.append("INBOX", raw_subject_message(KOREAN.encode("euc-kr"), "euc-kr"))
        admin.append("INBOX", raw_subject_message(encoded_word_subject(KOREAN, "EUC-KR").encode()))
        admin.append(
            "Sent",
            message(
                "회신", sender="fund@example.com", attachments=[("a.xlsx", b"xl", "application/x")]
            ),
        )
        second = run_cli("fund_mail_once", "--env-file", env)
        assert second.returncode == 0, second.stderr
        assert "fund_mail_once: 3 messages, 1 attachments, 2 bytes" in second.stdout
        assert "delivered 1 DB(s) and 2 file(s)" in second.stdout
    finally:
        admin.logout()

    rows = archived_rows(data_dir)
    assert sorted(r["subject"] for r in rows) == sorted([KOREAN, KOREAN, "회신"])
    assert {r["msg_kind"] for r in rows if r["subject"] == "회신"} == {"sent"}
    db = rows[0]["_db"]
    reference = tmp_path / "reference.db"
    with sqlite3.connect(reference) as conn:
        conn.executescript(SCHEMA_SQL)
    assert schema_of(db) == schema_of(reference), "exactly the pst-utils tables"
    landed = sorted(p.name for p in sftp_server.root.rglob("*") if p.is_file())
    # The DB, its attachment, and the day's manifest (delivered after the day's files).
    assert db.name in landed and len(landed) == 3
    assert f"manifest_{db.parent.name}.json" in landed

    third = run_cli("fund_mail_once", "--env-file", env)
    assert third.returncode == 0 and "no mail to archive" in third.stdout


def test_imap_one_day_and_wrong_password(dovecot, data_dir, tmp_path):
    admin = admin_client(dovecot)
    try:
        admin.append("INBOX", message("that day"), msg_time=datetime(2026, 2, 3, 1, tzinfo=UTC))
    finally:
        admin.logout()
    env = write_env(tmp_path / ".env", imap_values(dovecot, data_dir))
    day = run_cli("fund_mail_one_day", "--env-file", env, "--date", "2026-02-03")
    assert day.returncode == 0, day.stderr
    assert [r["subject"] for r in archived_rows(data_dir)] == ["that day"]
    audit = run_cli(
        "fund_mail_one_day", "--env-file", env, "--audit", "--dry-run", "--date", "2026-02-03"
    )
    assert audit.returncode == 0, audit.stderr
    assert "2026-02-03: 1 in the mailbox, 1 already archived, 0 missing" in audit.stdout

    bad = write_env(tmp_path / "bad.env", imap_values(dovecot, data_dir, IMAP_PASSWORD="nope-x1"))
    refused = run_cli("fund_mail_once", "--env-file", bad)
    assert refused.returncode == 4, refused.stderr
    assert "IMAP_PASSWORD" in refused.stderr and "nope-x1" not in refused.stderr
    logs = "".join(p.read_text("utf-8") for p in (data_dir / "logs").glob("*.log"))
    assert "IMAP_PASSWORD" in logs
    assert "nope-x1" not in logs and dovecot.password not in logs


def test_imap_check_and_status(dovecot, data_dir, tmp_path):
    env = write_env(tmp_path / ".env", imap_values(dovecot, data_dir))
    check = run_cli("fund_mail_once", "--env-file", env, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "[ OK ] IMAP sign-in and folders: signed in to 127.0.0.1" in check.stdout
    assert "with password; 3 folder(s), Sent: Sent" in check.stdout
    assert "Mail.Read" not in check.stdout, "no Graph checks for the IMAP source"

    before = run_cli("fund_mail_once", "--env-file", env, "--status")
    assert "no baseline yet" in before.stdout and "cursor:" not in before.stdout
    assert run_cli("fund_mail_once", "--env-file", env).returncode == 0
    after = run_cli("fund_mail_once", "--env-file", env, "--status")
    assert after.returncode == 0, after.stderr
    assert "3 folder(s)" in after.stdout and "INBOX: UIDVALIDITY " in after.stdout

    bad = write_env(tmp_path / "bad.env", imap_values(dovecot, data_dir, IMAP_PASSWORD="nope-x2"))
    refused = run_cli("fund_mail_once", "--env-file", bad, "--check")
    assert refused.returncode == 4 and "[FAIL] IMAP sign-in and folders" in refused.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize(
    "point",
    ["attachments-downloaded", "db-partial", "db-written", "index-committed", "db-published"],
)
def test_imap_kill_at_any_point_loses_nothing_and_duplicates_nothing(
    dovecot, data_dir, tmp_path, point
):
    env = write_env(tmp_path / ".env", imap_values(dovecot, data_dir))
    assert run_cli("fund_mail_once", "--env-file", env).returncode == 0
    admin = admin_client(dovecot)
    try:
        for i in range(3):
            admin.append("INBOX", message(f"b1-{i}", attachments=[(f"{i}.pdf", b"%" * i, "a/b")]))
        killed = run_cli("fund_mail_once", "--env-file", env, env={"FUND_MAIL_CRASH_AT": point})
        assert killed.returncode == -signal.SIGKILL
        admin.append("Sent", message("b2", sender="fund@example.com"))
    finally:
        admin.logout()
    recovered = run_cli("fund_mail_once", "--env-file", env)
    assert recovered.returncode == 0, recovered.stderr
    rows = archived_rows(data_dir)
    assert Counter(r["email_id"] for r in rows).most_common(1)[0][1] == 1, "archived twice"
    assert sorted(r["subject"] for r in rows) == ["b1-0", "b1-1", "b1-2", "b2"]
    for row in archived_rows(data_dir, "fund_mail_attach"):
        path = data_dir / row["save_folder"] / row["phy_file_name"]
        assert path.stat().st_size == row["file_size"]
    assert not list(data_dir.glob("*/.once-*")), "temporary files are cleaned up"
