"""The commit protocol's publish: an id that another command archived while this run was
writing is left out of this run's DB, so no race leaves it in two DBs; a full DB is published
on a thread of its own, in order, and a failed publish fails its day; the index records ids
exactly."""

import dataclasses
import sqlite3
import threading
import time
from collections import Counter
from datetime import date, datetime

import pytest

from fund_mail import crashpoints
from fund_mail.archive.index import INDEX_NAME, ArchiveIndex
from fund_mail.archive.store import ArchiveDb
from fund_mail.engine import run_day, run_once
from fund_mail.engine.archiver import Archiver
from fund_mail.engine.publisher import Publisher
from tests.helpers import archived_ids, archived_rows

DAY = date(2025, 6, 30)


def test_ids_archived_meanwhile_are_left_out_of_the_db(config, graph, monkeypatch):
    seoul = config.tz
    mine = [graph.mailbox.add_message(datetime(2025, 7, 1, 9, i, tzinfo=seoul)) for i in range(2)]
    raced = [graph.mailbox.add_message(datetime(2025, 6, 30, 9, i, tzinfo=seoul)) for i in range(3)]
    original = crashpoints.reached
    fired = []

    def backfill_meanwhile(point):
        if point == "db-written" and not fired:
            fired.append(point)
            run_day(config, DAY)  # fund_mail_one_day publishes DAY while once is publishing
        original(point)

    monkeypatch.setattr(crashpoints, "reached", backfill_meanwhile)
    result = run_once(config, since=datetime(2025, 6, 29, tzinfo=seoul))
    assert fired and result.messages == 2 and result.attachments == 0
    counts = Counter(archived_ids(config.data_dir))
    assert set(counts) == {m.immutable_id for m in mine + raced}
    assert set(counts.values()) == {1}, "no message is in two DBs"
    once_db = [r for r in archived_rows(config.data_dir) if r["_db"] == result.db_path]
    assert sorted(r["email_id"] for r in once_db) == sorted(m.immutable_id for m in mine)


def test_nothing_left_means_no_db(config, graph, monkeypatch):
    seoul = config.tz
    graph.mailbox.add_message(datetime(2025, 6, 30, 9, tzinfo=seoul))
    original = crashpoints.reached
    fired = []

    def backfill_meanwhile(point):
        if point == "db-written" and not fired:
            fired.append(point)
            run_day(config, DAY)
        original(point)

    monkeypatch.setattr(crashpoints, "reached", backfill_meanwhile)
    result = run_once(config, since=datetime(2025, 6, 29, tzinfo=seoul))
    assert fired and result.messages == 0 and result.db_path is None
    assert len(list(config.data_dir.glob("*/fm_*.db"))) == 1
    assert not list(config.data_dir.glob("*/.once-*")), "the emptied temporary DB is removed"


def test_a_full_db_is_published_on_its_own_thread_while_the_next_one_fills(
    config, graph, monkeypatch
):
    """The publish of a full DB waits here until the writer has added the next DB's rows; a
    publish on the writer's own thread could never see that happen."""
    small = dataclasses.replace(config, publish_every=3, page_size=10)
    mail = [
        graph.mailbox.add_message(datetime(2025, 6, 30, 9, i, tzinfo=config.tz)) for i in range(7)
    ]
    next_rows_added, seen, filled = threading.Event(), [], []
    original_publish, original_add_rows = Archiver._publish, Archiver._add_rows

    def publish(self, index, job):
        seen.append(
            (threading.current_thread() is threading.main_thread(), job.pending.db.messages)
        )
        if len(seen) == 1:
            seen.append(("next rows added meanwhile", next_rows_added.wait(timeout=10)))
        return original_publish(self, index, job)

    def add_rows(self, batch, plans, pending, result):
        original_add_rows(self, batch, plans, pending, result)
        filled.append(pending)
        if filled[0] is not pending:  # rows of the DB after the first
            next_rows_added.set()

    monkeypatch.setattr(Archiver, "_publish", publish)
    monkeypatch.setattr(Archiver, "_add_rows", add_rows)
    result = run_day(small, DAY)
    assert seen[:2] == [(False, 3), ("next rows added meanwhile", True)]
    assert [on_main for on_main, _ in seen[2:]] == [False, False]
    assert result.messages == 7 and len(result.db_paths) == 3
    assert sorted(archived_ids(config.data_dir)) == sorted(m.immutable_id for m in mail)


def test_a_failed_publish_fails_its_day_and_publishes_nothing_after_it(config, graph, monkeypatch):
    small = dataclasses.replace(config, publish_every=3, page_size=10)
    for i in range(7):
        graph.mailbox.add_message(datetime(2025, 6, 30, 9, i, tzinfo=config.tz))
    original, calls = ArchiveIndex.publish, []

    def publish(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ArchiveIndex, "publish", publish)
    with pytest.raises(sqlite3.OperationalError):
        run_day(small, DAY)
    assert len(calls) == 2, "the DB after the failed one is not published"
    assert len(archived_ids(config.data_dir)) == 3
    assert not list(config.data_dir.glob("*/.day-*")), "no temporary DB is left behind"
    monkeypatch.setattr(ArchiveIndex, "publish", original)
    assert run_day(small, DAY).messages == 7, "the day archives whole when run again"


@pytest.mark.parametrize(
    "ids",
    [
        ["AAMkAD=", "é-ünïcode-id", 'quote"and\\back', "emoji-😀", "tab\tid"],
        ["AAMkAD=", "nul\x00inside"],  # JSON cannot carry a NUL through SQLite: row by row
    ],
)
def test_the_index_records_every_id_exactly_as_given(tmp_path, ids):
    index = ArchiveIndex(tmp_path)
    day_dir = tmp_path / "2025_06_30"
    db = ArchiveDb(day_dir / ".day-x.tmp")
    db.finish()
    pairs = [(email_id, f"2025-06-30T00:00:0{n}Z") for n, email_id in enumerate(ids)]
    published = index.publish(db.path, day_dir, "fm_2025_06_30", "day", pairs, exclusive=True)
    assert published is not None
    assert index.known_ids(ids) == set(ids)
    index.close()
    with sqlite3.connect(tmp_path / INDEX_NAME) as conn:
        rows = conn.execute(
            "SELECT email_id, received_utc, db_file, command FROM archived ORDER BY rowid"
        ).fetchall()
    assert rows == [(i, r, "2025_06_30/fm_2025_06_30.db", "day") for i, r in pairs]


def test_closing_the_publisher_waits_for_the_publish_under_way(tmp_path):
    done = []

    def slow_publish(index, job):
        time.sleep(0.2)
        done.append((job, threading.current_thread() is threading.main_thread()))
        return index.path

    publisher = Publisher(tmp_path, slow_publish)
    future = publisher.start("the DB")
    publisher.close()
    assert done == [("the DB", False)], "close() returned before the publish had finished"
    assert future.result() == tmp_path / INDEX_NAME


def test_a_publisher_that_published_nothing_starts_no_thread(tmp_path):
    before = {t.name for t in threading.enumerate()}
    Publisher(tmp_path, lambda index, job: None).close()
    assert not [t for t in threading.enumerate() if t.name not in before]
    assert not (tmp_path / INDEX_NAME).exists(), "nor opens the index"
