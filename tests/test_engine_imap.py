"""SOURCE=imap against a real Dovecot: sign-in, incremental UIDs, resync, deletions, one day."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta

import pytest

from fund_mail import engine_imap
from fund_mail.archive.index import ArchiveIndex
from fund_mail.config import config_from_values
from fund_mail.errors import AuthError, RunFailed
from fund_mail.imap.client import FolderStatus, ImapMailbox, Summary
from tests.helpers import archived_rows
from tests.imap_mail import KOREAN, encoded_word_subject, message, raw_subject_message
from tests.imap_server import admin_client, imap_values


@pytest.fixture
def imap_config(dovecot, data_dir):
    return config_from_values(imap_values(dovecot, data_dir))


@pytest.fixture
def admin(dovecot):
    client = admin_client(dovecot)
    yield client
    client.logout()


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def folder_states(config) -> dict:
    index = ArchiveIndex(config.data_dir)
    try:
        return index.imap_folder_states()
    finally:
        index.close()


# -- pure planning ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "known, rescan, expected",
    [
        (None, False, engine_imap.FolderPlan("new")),
        ((7, 40), False, engine_imap.FolderPlan("incremental", after_uid=40)),
        ((6, 40), False, engine_imap.FolderPlan("resync")),
        ((7, 40), True, engine_imap.FolderPlan("range")),
    ],
)
def test_plan_folder(known, rescan, expected):
    assert engine_imap.plan_folder(FolderStatus(7, 50), known, rescan) == expected


def test_body_batches_bound_memory():
    sizes = [10, 10, 25, 5, 40]
    summaries = [Summary(i, s, now(), False, b"") for i, s in enumerate(sizes)]
    batches = [[s.size for s in b] for b in engine_imap.body_batches(summaries, max_bytes=30)]
    assert batches == [[10, 10], [25, 5], [40]]


# -- against Dovecot -------------------------------------------------------------------------
def test_password_login_baseline_then_new_mail(imap_config, admin):
    admin.append("INBOX", message("before the baseline"))
    first = engine_imap.run_once(imap_config)
    assert first.baseline and first.db_path is None
    assert set(folder_states(imap_config)) == {"INBOX", "Sent", "Drafts"}

    admin.create_folder("Funds/Korea")
    admin.append("INBOX", raw_subject_message(KOREAN.encode("euc-kr"), "euc-kr"))
    admin.append("INBOX", raw_subject_message(encoded_word_subject(KOREAN, "UTF-8").encode()))
    admin.append(
        "Funds/Korea", message("report", attachments=[("q3.pdf", b"%PDF-q3", "application/pdf")])
    )
    admin.append("Sent", message("reply", sender="fund@example.com", to="kim@example.com"))
    admin.append("Drafts", message("unfinished"), flags=[b"\\Draft"])
    result = engine_imap.run_once(imap_config)

    rows = archived_rows(imap_config.data_dir)
    assert result.messages == 4 == len(rows)
    by_subject = {}
    for row in rows:
        by_subject.setdefault(row["subject"], []).append(row)
    assert len(by_subject[KOREAN]) == 2
    assert {r["folder_path"] for r in by_subject[KOREAN]} == {"Inbox"}
    assert by_subject["report"][0]["folder_path"] == "Funds/Korea"
    assert by_subject["reply"][0]["msg_kind"] == "sent"
    assert by_subject["reply"][0]["folder_path"] == "Sent"
    assert by_subject["report"][0]["msg_kind"] == "receive"
    assert "before the baseline" not in by_subject and "unfinished" not in by_subject
    [attach] = archived_rows(imap_config.data_dir, "fund_mail_attach")
    assert attach["org_file_name"] == "q3.pdf" and attach["file_size"] == 7
    path = imap_config.data_dir / attach["save_folder"] / attach["phy_file_name"]
    assert path.read_bytes() == b"%PDF-q3"
    assert result.attachments == 1

    # Nothing new: no DB; new mail again: only that one.
    assert engine_imap.run_once(imap_config).db_path is None
    admin.append("INBOX", message("third"))
    assert engine_imap.run_once(imap_config).messages == 1
    assert len(archived_rows(imap_config.data_dir)) == 5


def xoauth2_config(graph, dovecot, data_dir):
    """The app registration's token instead of a password."""
    values = {**graph.env_values(data_dir), **imap_values(dovecot, data_dir, IMAP_PASSWORD="")}
    return config_from_values(values)


def test_xoauth2_with_an_app_token(graph, dovecot, data_dir, admin):
    config = xoauth2_config(graph, dovecot, data_dir)
    assert not config.imap_password
    with ImapMailbox(config) as mailbox:
        assert "INBOX" in {f.name for f in mailbox.folders()}
    assert dovecot.introspection.calls >= 1
    assert graph.records("token"), "the token came from the app registration's token endpoint"
    engine_imap.run_once(config)
    admin.append("INBOX", message("over xoauth2"))
    assert engine_imap.run_once(config).messages == 1


def test_a_refused_token_is_a_sign_in_error(graph, dovecot, data_dir):
    config = xoauth2_config(graph, dovecot, data_dir)
    with pytest.raises(AuthError, match="IMAP.AccessAsApp"):
        ImapMailbox(config, token="not-a-token").connect()


def test_wrong_password_is_a_sign_in_error(dovecot, data_dir):
    config = config_from_values(imap_values(dovecot, data_dir, IMAP_PASSWORD="wrong"))
    with pytest.raises(AuthError, match="IMAP_PASSWORD") as caught:
        ImapMailbox(config).connect()
    assert "wrong" not in str(caught.value)


def test_starttls(dovecot, data_dir, admin):
    config = config_from_values(
        imap_values(dovecot, data_dir, IMAP_PORT=str(dovecot.starttls_port), IMAP_TLS="starttls")
    )
    engine_imap.run_once(config)
    admin.append("INBOX", message("over starttls"))
    assert engine_imap.run_once(config).messages == 1


def test_uidvalidity_reset_resyncs_without_duplicates(imap_config, admin):
    engine_imap.run_once(imap_config)
    admin.create_folder("Funds")
    kept = [message(f"kept {i}", when=now()) for i in range(3)]
    for raw in kept:
        admin.append("Funds", raw)
    assert engine_imap.run_once(imap_config).messages == 3
    validity_before = folder_states(imap_config)["Funds"][0]

    # The server rebuilds the folder: new UIDVALIDITY, UIDs from 1 again, so the new message
    # gets a UID below the highest one read before.
    admin.delete_folder("Funds")
    admin.create_folder("Funds")
    admin.append("Funds", kept[0])
    admin.append("Funds", message("arrived during the rebuild"))
    result = engine_imap.run_once(imap_config)

    assert result.messages == 1
    subjects = sorted(r["subject"] for r in archived_rows(imap_config.data_dir))
    assert subjects == ["arrived during the rebuild", "kept 0", "kept 1", "kept 2"]
    assert folder_states(imap_config)["Funds"][0] != validity_before


def test_a_message_moved_to_another_folder_is_not_archived_again(imap_config, admin):
    engine_imap.run_once(imap_config)
    admin.append("INBOX", message("to be filed"))
    assert engine_imap.run_once(imap_config).messages == 1
    admin.create_folder("Filed")
    admin.select_folder("INBOX")
    admin.move(admin.search(["ALL"]), "Filed")
    assert engine_imap.run_once(imap_config).db_path is None


def test_deletion_mid_sync(imap_config, admin, monkeypatch):
    engine_imap.run_once(imap_config)
    for i in range(3):
        admin.append("INBOX", message(f"m{i}"))
    admin.select_folder("INBOX")
    doomed = sorted(admin.search(["SUBJECT", "m1"]))

    real_bodies = ImapMailbox.bodies

    def bodies_after_a_deletion(self, uids):
        # Between the summaries and the bodies, another client expunges one message.
        if doomed[0] in uids:
            admin.delete_messages(doomed)
            admin.expunge()
        return real_bodies(self, uids)

    monkeypatch.setattr(ImapMailbox, "bodies", bodies_after_a_deletion)
    result = engine_imap.run_once(imap_config)
    assert result.messages == 2
    assert sorted(r["subject"] for r in archived_rows(imap_config.data_dir)) == ["m0", "m2"]
    monkeypatch.setattr(ImapMailbox, "bodies", real_bodies)
    assert engine_imap.run_once(imap_config).db_path is None


def test_a_failure_publishes_nothing_and_keeps_the_folder_state(imap_config, admin, monkeypatch):
    engine_imap.run_once(imap_config)
    admin.append("INBOX", message("survives a failed run"))
    before = folder_states(imap_config)

    real_bodies = ImapMailbox.bodies

    def broken(self, uids):
        raise OSError("connection reset")

    monkeypatch.setattr(ImapMailbox, "bodies", broken)
    with pytest.raises(OSError):
        engine_imap.run_once(imap_config)
    assert folder_states(imap_config) == before
    assert not list(imap_config.data_dir.glob("*/*.db"))
    assert not list(imap_config.data_dir.glob("*/.once-*"))
    monkeypatch.setattr(ImapMailbox, "bodies", real_bodies)
    assert engine_imap.run_once(imap_config).messages == 1


def test_one_day_over_imap(imap_config, admin):
    day = date(2026, 3, 2)
    seoul_noon = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # 12:00 in Asia/Seoul
    admin.append("INBOX", message("in the day"), msg_time=seoul_noon)
    admin.append("Sent", message("sent that day"), msg_time=seoul_noon + timedelta(hours=5))
    admin.append(
        "INBOX", message("the day before"), msg_time=datetime(2026, 3, 1, 14, 59, tzinfo=UTC)
    )
    admin.append(
        "INBOX", message("the day after"), msg_time=datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    )
    result = engine_imap.run_day(imap_config, day)
    assert result.messages == 2
    assert result.db_path.parent.name == "2026_03_02"
    with sqlite3.connect(result.db_path) as conn:
        subjects = sorted(r[0] for r in conn.execute("SELECT subject FROM fund_mail"))
    assert subjects == ["in the day", "sent that day"]
    # A backfill never moves the incremental state.
    assert folder_states(imap_config) == {}


def test_audit_finds_and_repairs_gaps_over_imap(imap_config, admin):
    day = date(2026, 3, 4)
    noon = datetime(2026, 3, 4, 3, 0, tzinfo=UTC)  # 12:00 in Asia/Seoul
    admin.append("INBOX", message("archived by the backfill"), msg_time=noon)
    assert engine_imap.run_day(imap_config, day).messages == 1
    # Filed elsewhere since: a new UID in another folder, but the same message.
    admin.create_folder("Filed")
    admin.select_folder("INBOX")
    admin.move(admin.search(["ALL"]), "Filed")
    admin.append("INBOX", message("missed 1"), msg_time=noon + timedelta(minutes=1))
    admin.append("Sent", message("missed 2"), msg_time=noon + timedelta(minutes=2))
    admin.append("INBOX", message("another day"), msg_time=noon + timedelta(days=1))

    dry = engine_imap.run_audit(imap_config, [day], dry_run=True)
    [counts] = [a.counts for a in dry.audits]
    assert (counts.in_mailbox, counts.archived, counts.missing, counts.repaired) == (3, 1, 2, 0)
    assert dry.gaps == [day]
    assert len(archived_rows(imap_config.data_dir)) == 1, "a dry run changes nothing"

    repaired = engine_imap.run_audit(imap_config, [day])
    [audit] = repaired.audits
    assert audit.complete and audit.counts.repaired == 2
    assert audit.result.db_path.parent.name == "2026_03_04"
    subjects = sorted(r["subject"] for r in archived_rows(imap_config.data_dir))
    assert subjects == ["archived by the backfill", "missed 1", "missed 2"]

    again = engine_imap.run_audit(imap_config, [day])
    assert again.audits[0].counts.missing == 0 and again.total.db_path is None


def test_a_long_catch_up_publishes_every_publish_every_messages(dovecot, data_dir, admin):
    config = config_from_values(imap_values(dovecot, data_dir, PUBLISH_EVERY="2"))
    engine_imap.run_once(config)
    for i in range(5):
        admin.append("INBOX", message(f"c{i}"))
    result = engine_imap.run_once(config)
    assert result.messages == 5 and len(result.db_paths) == 3
    assert sorted(r["subject"] for r in archived_rows(data_dir)) == [f"c{i}" for i in range(5)]


def test_since_archives_every_folder_from_then_without_duplicates(imap_config, admin):
    t0 = now()
    admin.append("INBOX", message("too old"), msg_time=t0 - timedelta(days=3))
    admin.append("INBOX", message("recent"), msg_time=t0 - timedelta(hours=2))
    admin.append("Sent", message("sent recently"), msg_time=t0 - timedelta(hours=1))
    result = engine_imap.run_once(imap_config, since=t0 - timedelta(days=1))
    assert result.messages == 2 and not result.baseline
    assert engine_imap.run_once(imap_config, since=t0 - timedelta(days=1)).db_path is None
    # It also took the baseline: the next plain run only archives new mail.
    admin.append("INBOX", message("new"))
    assert engine_imap.run_once(imap_config).messages == 1
    subjects = sorted(r["subject"] for r in archived_rows(imap_config.data_dir))
    assert subjects == ["new", "recent", "sent recently"]


def test_an_unreachable_server_fails_the_run(data_dir, dovecot):
    from tests.imap_server import free_port

    config = config_from_values(imap_values(dovecot, data_dir, IMAP_PORT=str(free_port())))
    with pytest.raises(RunFailed, match="Could not reach the IMAP server"):
        engine_imap.run_once(config)
