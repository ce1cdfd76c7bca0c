"""The completeness audit: it finds what no overlap window can, repairs it once, and runs by
itself once a day inside fund_mail_once."""

import dataclasses
from collections import Counter
from datetime import date, datetime, timedelta

import pytest

from fund_mail.archive.index import ArchiveIndex
from fund_mail.emulator import file_attachment
from fund_mail.engine import run_audit, run_day, run_once
from fund_mail.graph.client import ID_FIELDS
from tests.helpers import archived_ids, archived_rows

DAY = date(2025, 6, 30)


def kst(config, day, hour, minute=0):
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=config.tz)


def audit_lists(graph):
    return [r for r in graph.records("list") if r.query.get("$select") == ID_FIELDS]


def restored_mail_setup(config, graph):
    """A baseline at 08:00, mail at 10:00 archived by once, then a message restored with a
    receivedDateTime of 09:00: hours before the cursor, outside every overlap window."""
    graph.mailbox.add_message(kst(config, DAY, 8))
    run_once(config, now=lambda: kst(config, DAY, 8, 5))
    graph.mailbox.add_message(kst(config, DAY, 10))
    assert run_once(config, now=lambda: kst(config, DAY, 10, 5)).messages == 1
    restored = graph.mailbox.add_message(
        kst(config, DAY, 9), subject="restored", attachments=[file_attachment("r.pdf", b"%PDF-r")]
    )
    assert run_once(config, now=lambda: kst(config, DAY, 10, 10)).messages == 0, "invisible"
    return restored


def test_audit_repairs_restored_mail_exactly_once(config, graph):
    restored = restored_mail_setup(config, graph)
    first = run_audit(config, [DAY])
    [audit] = first.audits
    assert (audit.counts.in_mailbox, audit.counts.archived) == (3, 2)
    assert (audit.counts.missing, audit.counts.repaired) == (1, 1) and audit.complete
    assert "3 in the mailbox, 2 already archived, 1 missing, 1 repaired" in audit.line()
    rows = archived_rows(config.data_dir)
    repaired = [r for r in rows if r["email_id"] == restored.immutable_id]
    assert len(repaired) == 1 and repaired[0]["_db"].parent.name == "2025_06_30"
    [attachment] = [
        a
        for a in archived_rows(config.data_dir, "fund_mail_attach")
        if a["email_id"] == restored.immutable_id
    ]
    assert (config.data_dir / attachment["save_folder"] / attachment["phy_file_name"]).read_bytes()
    index = ArchiveIndex(config.data_dir)
    try:
        assert index.relative(repaired[0]["_db"]) in index.queued(), "delivered like the rest"
    finally:
        index.close()
    # A second audit finds nothing, and archives nothing again.
    [again] = run_audit(config, [DAY]).audits
    assert (again.counts.missing, again.counts.repaired) == (0, 0)
    assert Counter(archived_ids(config.data_dir))[restored.immutable_id] == 1


def test_a_dry_run_reports_and_changes_nothing(config, graph):
    restored_mail_setup(config, graph)
    before = sorted(archived_ids(config.data_dir))
    report = run_audit(config, [DAY], dry_run=True)
    assert report.gaps == [DAY] and report.audits[0].counts.missing == 1
    assert sorted(archived_ids(config.data_dir)) == before


def test_the_audit_counts_one_day_archives_and_the_baseline_as_archived(config, graph):
    for hour in (9, 10, 11):
        graph.mailbox.add_message(kst(config, DAY, hour))
    run_day(config, DAY)
    [audit] = run_audit(config, [DAY]).audits
    assert (audit.counts.in_mailbox, audit.counts.archived, audit.counts.missing) == (3, 3, 0)


def test_an_audit_of_a_complete_day_costs_only_id_pages(config, graph):
    start = kst(config, DAY, 0)
    for i in range(2500):
        graph.mailbox.add_message(start + timedelta(seconds=7 * i))
    run_day(config, DAY)
    graph.reset_log()
    report = run_audit(config, [DAY])
    assert report.audits[0].counts.in_mailbox == 2500 and report.audits[0].complete
    targets = Counter(r.target for r in graph.records())
    # ceil(2,500 / 1,000) id pages (the newest, the oldest, one slice between them): no
    # bodies, no attachments, no folders, no messages; discovery was kept by the run before.
    assert targets == {"token": 1, "list": 3}
    assert all("$expand" not in r.query for r in graph.records("list"))


@pytest.fixture
def audited(config):
    return dataclasses.replace(config, audit_days=2, audit_at="01:00")


def test_the_self_audit_runs_once_a_day_after_audit_at(audited, graph):
    config = audited
    graph.mailbox.add_message(kst(config, DAY, 8))
    run_once(config, now=lambda: kst(config, DAY, 8, 5))  # baseline: floor on DAY
    graph.mailbox.add_message(kst(config, DAY, 23))
    tomorrow = DAY + timedelta(days=1)

    def once_at(day, hour, minute):
        """The days the run audited: a day's listing asks for its newest and its oldest page
        over the same window."""
        graph.reset_log()
        run_once(config, now=lambda: kst(config, day, hour, minute))
        return len({r.query["$filter"] for r in audit_lists(graph)})

    assert once_at(DAY, 23, 10) == 0, "DAY itself is audited from tomorrow on"
    # Restored with its old date, long before the cursor: only the audit can see it.
    restored = graph.mailbox.add_message(kst(config, DAY, 9))
    assert once_at(tomorrow, 0, 50) == 0, "not before AUDIT_AT"
    # 01:05: DAY (the day before DAY is before the floor, so it is left alone).
    assert once_at(tomorrow, 1, 5) == 1
    assert Counter(archived_ids(config.data_dir))[restored.immutable_id] == 1
    assert once_at(tomorrow, 1, 10) == 0, "once a day, not on every run"
    assert once_at(tomorrow, 18, 0) == 0
    day_after = tomorrow + timedelta(days=1)
    assert once_at(day_after, 1, 5) == 2, "the next day: DAY and tomorrow"
    assert Counter(archived_ids(config.data_dir))[restored.immutable_id] == 1


def test_a_failed_self_audit_does_not_fail_the_run_and_is_retried(audited, graph):
    config = audited
    graph.mailbox.add_message(kst(config, DAY, 8))
    run_once(config, now=lambda: kst(config, DAY, 8, 5))
    graph.mailbox.add_message(kst(config, DAY, 12))
    run_once(config, now=lambda: kst(config, DAY, 12, 5))
    restored = graph.mailbox.add_message(kst(config, DAY, 9))
    new = graph.mailbox.add_message(kst(config, DAY + timedelta(days=1), 1))
    graph.add_fault(
        "unavailable",
        target="list",
        times=None,
        query_contains=f"$select={ID_FIELDS}",
    )
    fast = dataclasses.replace(config, retry_backoff=0.001)
    at = kst(config, DAY + timedelta(days=1), 1, 5)
    result = run_once(fast, now=lambda: at)
    assert result.messages == 1 and new.immutable_id in archived_ids(config.data_dir)
    assert restored.immutable_id not in archived_ids(config.data_dir)
    graph.clear_faults()
    run_once(fast, now=lambda: at + timedelta(minutes=5))
    assert restored.immutable_id in archived_ids(config.data_dir), "retried on the next run"


def test_status_shows_the_last_seven_days_of_audits(config, graph):
    from fund_mail.admin.status import audit_lines

    restored_mail_setup(config, graph)
    run_audit(config, [DAY - timedelta(days=1)])
    run_audit(config, [DAY], dry_run=True)
    lines = audit_lines(config, today=DAY + timedelta(days=1))
    assert lines[0] == "  audit, last 7 days:"
    assert lines[1].startswith(f"    {DAY}  1 missing (dry run")
    assert lines[2].startswith(f"    {DAY - timedelta(days=1)}  verified complete ")
    assert lines[2].endswith(", 0 message(s)")
    assert lines[3] == f"    {DAY - timedelta(days=2)}  not yet audited"
    run_audit(config, [DAY])
    repaired = audit_lines(config, today=DAY + timedelta(days=1))[1]
    assert "1 gap(s) found, 1 repaired" in repaired and "3 message(s)" in repaired
