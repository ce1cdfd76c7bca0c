"""fund_mail_one_day's core: whole local days, independent of the incremental cursor."""

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

import pytest

from fund_mail.emulator import file_attachment
from fund_mail.engine import day_bounds, run_day, run_days, run_once
from fund_mail.errors import GraphError
from tests.helpers import archived_rows

DAY = date(2025, 6, 30)


def at_kst(config, day, hour, minute=0, second=0):
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=config.tz)


def test_day_bounds_are_local_midnights(config):
    start, end = day_bounds(DAY, config)
    assert start == datetime(2025, 6, 29, 15, tzinfo=UTC)
    assert end == datetime(2025, 6, 30, 15, tzinfo=UTC)


def test_day_bounds_across_a_dst_change(config):
    berlin = dataclasses.replace(config, timezone="Europe/Berlin")
    start, end = day_bounds(date(2025, 3, 30), berlin)  # a 23-hour day
    assert end - start == timedelta(hours=23)


def test_messages_at_the_edges_land_on_the_right_day(config, graph):
    previous = DAY - timedelta(days=1)
    last_of_previous = graph.mailbox.add_message(at_kst(config, previous, 23, 59, 59))
    first_of_day = graph.mailbox.add_message(at_kst(config, DAY, 0, 0, 0))
    last_of_day = graph.mailbox.add_message(at_kst(config, DAY, 23, 59, 59))
    first_of_next = graph.mailbox.add_message(at_kst(config, DAY + timedelta(days=1), 0, 0, 0))
    result = run_day(config, DAY)
    assert result.db_path.parent.name == "2025_06_30"
    assert result.db_path.name.startswith("fm_2025_06_30_")
    rows = {r["email_id"]: r for r in archived_rows(config.data_dir)}
    assert set(rows) == {first_of_day.immutable_id, last_of_day.immutable_id}
    assert rows[first_of_day.immutable_id]["kst_time"] == "2025-06-30 00:00:00"
    assert rows[last_of_day.immutable_id]["kst_time"] == "2025-06-30 23:59:59"
    run_day(config, previous)
    run_day(config, DAY + timedelta(days=1))
    by_day = {r["email_id"]: r["_db"].parent.name for r in archived_rows(config.data_dir)}
    assert by_day[last_of_previous.immutable_id] == "2025_06_29"
    assert by_day[first_of_next.immutable_id] == "2025_07_01"


def test_a_day_with_more_than_1000_messages(config, graph):
    messages = [
        graph.mailbox.add_message(at_kst(config, DAY, 9) + timedelta(seconds=i))
        for i in range(1500)
    ]
    graph.mailbox.add_message(at_kst(config, DAY, 10), is_draft=True, folder="drafts")
    pages = []
    result = run_day(config, DAY, on_page=pages.append)
    assert result.messages == 1500 and pages == [1000, 500]
    assert sorted(r["email_id"] for r in archived_rows(config.data_dir)) == sorted(
        m.immutable_id for m in messages
    )


def test_an_empty_day_writes_no_db(config, graph):
    graph.mailbox.add_message(at_kst(config, DAY - timedelta(days=1), 12))
    result = run_day(config, DAY)
    assert result.db_path is None and result.messages == 0
    assert list(config.data_dir.glob("*/fm_*.db")) == []


def test_the_same_day_twice_gives_a_second_complete_db_and_no_duplicate_files(config, graph):
    graph.mailbox.add_message(
        at_kst(config, DAY, 9), attachments=[file_attachment("a.pdf", b"abc")]
    )
    first = run_day(config, DAY)
    first_bytes = first.db_path.read_bytes()
    second = run_day(config, DAY)
    assert first.db_path != second.db_path
    assert first.db_path.read_bytes() == first_bytes, "the first DB is untouched"
    assert len(archived_rows(config.data_dir)) == 2
    assert len(list((config.data_dir / "2025_06_30" / "attach").iterdir())) == 1


def test_one_day_leaves_the_cursor_alone(config, graph):
    # Fixed times on a fixed day: the test never depends on what day it is in TIMEZONE.
    graph.mailbox.add_message(at_kst(config, DAY, 9))
    run_once(config)
    state = (config.data_dir / "LAST_TIME.json").read_bytes()
    new = graph.mailbox.add_message(at_kst(config, DAY, 10))
    run_day(config, DAY)
    assert (config.data_dir / "LAST_TIME.json").read_bytes() == state
    # fund_mail_once moves past the new message without archiving it a second time.
    assert run_once(config).messages == 0
    assert (
        json.loads((config.data_dir / "LAST_TIME.json").read_text())["last_email_id"]
        == new.immutable_id
    )
    assert [r["email_id"] for r in archived_rows(config.data_dir)].count(new.immutable_id) == 1


def test_a_failing_day_raises_and_leaves_nothing(config, graph):
    config = dataclasses.replace(config, retry_backoff=0.001)
    graph.mailbox.add_message(at_kst(config, DAY, 9))
    graph.add_fault("unavailable", target="list", times=None)
    with pytest.raises(GraphError):
        run_day(config, DAY)
    assert list(config.data_dir.glob("*/fm_*.db")) == []
    assert list(config.data_dir.glob("*/.day-*")) == []


def test_the_next_pages_downloads_start_before_the_page_before_is_written(config, graph):
    """One download pipeline: page 2's attachments are queued while page 1 still waits for a
    slow download, so the workers do not drain at the page boundary."""
    paged = dataclasses.replace(config, page_size=10)
    messages = [
        graph.mailbox.add_message(
            at_kst(config, DAY, 9, i), attachments=[file_attachment(f"{i}.pdf", b"%PDF")]
        )
        for i in range(20)
    ]
    newest_page, oldest_page = messages[10:], messages[:10]
    slow = quote(newest_page[0].immutable_id, safe="")
    graph.add_fault(
        "slow", target="attachment", delay=1.0, path_contains=newest_page[0].immutable_id
    )
    result = run_day(paged, DAY)
    assert result.messages == 20 and result.attachments == 20
    downloads = graph.records("attachment")
    slow_done = next(r.finished for r in downloads if slow in r.path)
    later_page = {quote(m.immutable_id, safe="") for m in oldest_page}
    started = [r.started for r in downloads if any(i in r.path for i in later_page)]
    assert min(started) < slow_done


def test_a_range_lists_the_next_day_while_a_day_downloads(config, graph):
    first, second = DAY, DAY + timedelta(days=1)
    slow = graph.mailbox.add_message(
        at_kst(config, first, 9), attachments=[file_attachment("a.pdf", b"%PDF")]
    )
    graph.mailbox.add_message(at_kst(config, second, 9))
    graph.add_fault("slow", target="attachment", delay=1.0)
    outcome = run_days(config, [first, second])
    assert outcome.total.messages == 2 and not outcome.failed
    slow_done = graph.records("attachment")[0].finished
    second_start = day_bounds(second, config)[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    second_listed = [r for r in graph.records("list") if second_start in r.query["$filter"]]
    assert second_listed and second_listed[0].started < slow_done
    assert slow.immutable_id in {r["email_id"] for r in archived_rows(config.data_dir)}


def test_a_killed_or_failed_range_resumes_without_redoing_finished_days(config, graph):
    days = [DAY + timedelta(days=n) for n in range(3)]
    for day in days:
        graph.mailbox.add_message(at_kst(config, day, 9))
    # The middle day cannot be written: its folder's name is taken by a file.
    blocker = config.data_dir / days[1].strftime("%Y_%m_%d")
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    outcome = run_days(config, days)
    assert outcome.failed == [days[1]] and outcome.total.messages == 2
    blocker.unlink()
    graph.reset_log()
    outcome = run_days(config, days)
    assert outcome.total.messages == 1 and not outcome.failed
    listed = [r.query["$filter"] for r in graph.records("list")]
    middle = day_bounds(days[1], config)[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    # Only the middle day is listed: its newest and its oldest page, over the same window.
    assert len(listed) == 2 and len(set(listed)) == 1 and middle in listed[0]
    # Every day done: the range is forgotten, and running it again archives it all again.
    graph.reset_log()
    assert run_days(config, days).total.messages == 3
    assert len({r.query["$filter"] for r in graph.records("list")}) == 3
    # Each day once per run that archived it: days 1 and 3 twice, day 2 twice.
    assert len(archived_rows(config.data_dir)) == 6
