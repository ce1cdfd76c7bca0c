"""The incremental invariants of fund_mail_once, run through the real msal/requests stack
against the emulator. Each test fails if its invariant breaks."""

import dataclasses
import json
import sqlite3
from collections import Counter
from datetime import datetime, timedelta

import pytest

from fund_mail.archive.fsutil import RunLock
from fund_mail.archive.index import ArchiveIndex
from fund_mail.emulator import file_attachment
from fund_mail.engine import run_day, run_once
from fund_mail.errors import GraphError, StateError
from tests.helpers import archived_ids, archived_rows


def ids_of(messages):
    return sorted(m.immutable_id for m in messages)


def assert_exactly_once(data_dir, expected):
    found = archived_ids(data_dir)
    duplicates = [i for i, n in Counter(found).items() if n > 1]
    assert not duplicates, f"archived twice: {duplicates[:3]}"
    assert sorted(found) == sorted(expected)


def test_first_run_records_a_baseline_and_archives_nothing(config, graph, now):
    graph.mailbox.add_message(now - timedelta(hours=2))
    newest = graph.mailbox.add_message(now - timedelta(hours=1), subject="newest")
    result = run_once(config)
    assert result.baseline and result.db_path is None
    state = json.loads((config.data_dir / "LAST_TIME.json").read_text("utf-8"))
    assert state["last_email_id"] == newest.immutable_id and state["title"] == "newest"
    assert archived_ids(config.data_dir) == []
    # The next run archives only what arrives after the baseline.
    later = graph.mailbox.add_message(now)
    run_once(config)
    assert_exactly_once(config.data_dir, [later.immutable_id])


def test_first_run_on_an_empty_mailbox(config, graph, now):
    assert run_once(config).baseline
    message = graph.mailbox.add_message(now)
    run_once(config)
    assert_exactly_once(config.data_dir, [message.immutable_id])


def test_since_archives_everything_received_since_then(config, graph, now):
    old = graph.mailbox.add_message(now - timedelta(days=3))
    recent = [graph.mailbox.add_message(now - timedelta(hours=h)) for h in (30, 5, 1)]
    result = run_once(config, since=now - timedelta(days=2))
    assert result.messages == 3
    assert_exactly_once(config.data_dir, ids_of(recent))
    assert old.immutable_id not in archived_ids(config.data_dir)


def test_burst_larger_than_a_page_is_archived_exactly_once(config, graph, now):
    run_once(config)
    burst = [graph.mailbox.add_message(now + timedelta(seconds=i // 3)) for i in range(2500)]
    graph.reset_log()
    result = run_once(config)
    assert result.messages == 2500
    assert len(graph.records("list")) == 3, "2,500 messages are three pages of 1,000"
    assert_exactly_once(config.data_dir, ids_of(burst))


def test_short_pages_and_opaque_next_links(config, graph, now):
    graph.max_page = 7  # pages shorter than $top while more follow
    run_once(config)
    burst = [graph.mailbox.add_message(now + timedelta(seconds=i)) for i in range(50)]
    run_once(config)
    assert_exactly_once(config.data_dir, ids_of(burst))


def test_same_second_messages_across_runs(config, graph, now):
    run_once(config)
    first = graph.mailbox.add_message(now + timedelta(seconds=5))
    run_once(config)
    second = graph.mailbox.add_message(now + timedelta(seconds=5))  # the same second
    run_once(config)
    assert_exactly_once(config.data_dir, [first.immutable_id, second.immutable_id])


def test_late_visible_older_message_within_overlap(config, graph, now):
    run_once(config)
    late = graph.mailbox.add_message(now + timedelta(minutes=1), visible=False)
    newer = graph.mailbox.add_message(now + timedelta(minutes=10))
    run_once(config)
    late.visible = True  # e.g. restored or imported with its original date
    newest = graph.mailbox.add_message(now + timedelta(minutes=20))
    run_once(config)
    assert_exactly_once(
        config.data_dir, [late.immutable_id, newer.immutable_id, newest.immutable_id]
    )


def test_deleted_cursor_message_does_not_widen_the_scan(config, graph, now):
    run_once(config)
    cursor_message = graph.mailbox.add_message(now + timedelta(minutes=1))
    run_once(config)
    graph.mailbox.delete(cursor_message)
    after = graph.mailbox.add_message(now + timedelta(minutes=2))
    graph.reset_log()
    run_once(config)
    assert_exactly_once(config.data_dir, [cursor_message.immutable_id, after.immutable_id])
    list_filter = graph.records("list")[0].query["$filter"]
    assert list_filter.startswith("receivedDateTime ge ")


def test_moved_cursor_message_is_not_archived_again(config, graph, now):
    run_once(config)
    message = graph.mailbox.add_message(now + timedelta(minutes=1))
    run_once(config)
    graph.mailbox.move(message, "archive")
    after = graph.mailbox.add_message(now + timedelta(minutes=2))
    run_once(config)
    assert_exactly_once(config.data_dir, [message.immutable_id, after.immutable_id])


def test_ids_are_immutable_ids(config, graph, now):
    run_once(config)
    graph.reset_log()
    message = graph.mailbox.add_message(now + timedelta(minutes=1))
    run_once(config)
    assert archived_ids(config.data_dir) == [message.immutable_id]
    assert message.rest_id(immutable=False) != message.immutable_id


def test_drafts_are_not_archived(config, graph, now):
    run_once(config)
    draft = graph.mailbox.add_message(now + timedelta(minutes=1), folder="drafts", is_draft=True)
    mail = graph.mailbox.add_message(now + timedelta(minutes=1))
    run_once(config)
    assert_exactly_once(config.data_dir, [mail.immutable_id])
    assert draft.immutable_id not in archived_ids(config.data_dir)


def test_no_new_mail_writes_no_db(config, graph, now):
    graph.mailbox.add_message(now)
    run_once(config)
    result = run_once(config)
    assert result.db_path is None and result.messages == 0
    assert list(config.data_dir.glob("*/fm_*.db")) == []


def test_a_failed_run_leaves_state_unchanged_and_the_next_run_recovers(config, graph, now):
    config = dataclasses.replace(config, retry_backoff=0.001)
    run_once(config)
    state_before = (config.data_dir / "LAST_TIME.json").read_bytes()
    messages = [
        graph.mailbox.add_message(
            now + timedelta(minutes=i), attachments=[file_attachment(f"f{i}.pdf", b"%PDF" * i)]
        )
        for i in range(1, 6)
    ]
    poisoned = messages[2].attachments[0].id
    fault = graph.add_fault("unavailable", target="attachment", times=None, path_contains=poisoned)
    with pytest.raises(GraphError, match="503"):
        run_once(config)
    assert fault.fired >= 2, "the failing download was retried"
    assert (config.data_dir / "LAST_TIME.json").read_bytes() == state_before
    assert list(config.data_dir.glob("*/fm_*.db")) == []
    assert not list(config.data_dir.glob("*/.once-*")), "no temporary DB left behind"
    graph.clear_faults()
    run_once(config)
    assert_exactly_once(config.data_dir, ids_of(messages))


def test_a_second_run_while_the_lock_is_held_exits_without_work(config, graph, now):
    from fund_mail.errors import LockedError

    run_once(config)
    graph.mailbox.add_message(now + timedelta(minutes=1))
    with RunLock(config.data_dir / "fund_mail_once.lock", "fund_mail_once"):
        graph.reset_log()
        with pytest.raises(LockedError):
            run_once(config)
        assert graph.records() == [], "a locked-out run sends no request"
    run_once(config)
    assert len(archived_ids(config.data_dir)) == 1


def test_corrupt_state_stops_the_run_and_since_recovers_it(config, graph, now):
    run_once(config)
    first = graph.mailbox.add_message(now + timedelta(minutes=1))
    run_once(config)
    (config.data_dir / "LAST_TIME.json").write_text("{not json")
    second = graph.mailbox.add_message(now + timedelta(minutes=2))
    with pytest.raises(StateError, match="--since"):
        run_once(config)
    assert archived_ids(config.data_dir) == [first.immutable_id]
    run_once(config, since=now - timedelta(hours=1))
    assert_exactly_once(config.data_dir, [first.immutable_id, second.immutable_id])
    assert list(config.data_dir.glob("LAST_TIME.json.unreadable-*"))


def test_missing_state_resumes_from_the_index_with_its_overlap(config, graph, now):
    graph.mailbox.add_message(now - timedelta(hours=1))
    run_once(config)
    first = graph.mailbox.add_message(now + timedelta(minutes=10))
    late = graph.mailbox.add_message(now + timedelta(minutes=5), visible=False)
    run_once(config)
    (config.data_dir / "LAST_TIME.json").unlink()
    late.visible = True  # older than the newest archived mail, inside the overlap window
    second = graph.mailbox.add_message(now + timedelta(minutes=20))
    run_once(config)
    assert_exactly_once(
        config.data_dir, [first.immutable_id, late.immutable_id, second.immutable_id]
    )


def test_legacy_state_file_continues_without_re_archiving(config, graph, now):
    old = graph.mailbox.add_message(now - timedelta(minutes=10))
    config.data_dir.mkdir(parents=True)
    (config.data_dir / "LAST_TIME.json").write_text(
        json.dumps(
            {
                "last_email_id": old.immutable_id,
                "last_fetch_time": (now - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "last_fetch_time_kst": "",
                "title": "",
            }
        )
    )
    new = graph.mailbox.add_message(now)
    run_once(config)
    assert_exactly_once(config.data_dir, [new.immutable_id])


def test_output_layout_names_and_attachment_files(config, graph, now):
    run_once(config)
    graph.mailbox.add_folder("Funds", parent="inbox")
    message = graph.mailbox.add_message(
        now + timedelta(minutes=1),
        folder="Inbox/Funds",
        attachments=[
            file_attachment("a.pdf", b"A" * 10),
            file_attachment("a.pdf", b"B" * 20),
            file_attachment("empty.txt", b""),
        ],
    )
    result = run_once(config)
    db = result.db_path
    assert db.parent.parent == config.data_dir
    assert db.name.startswith("fm_" + db.parent.name + "_") and len(db.stem) == len(
        "fm_2025_06_30_1200"
    )
    rows = archived_rows(config.data_dir, "fund_mail_attach")
    assert sorted(r["file_size"] for r in rows) == [0, 10, 20]
    assert len({r["phy_file_name"] for r in rows}) == 3, "duplicate names get distinct files"
    for r in rows:
        assert r["save_folder"] == f"{db.parent.name}/attach"
        assert r["email_id"] == message.immutable_id
        assert (config.data_dir / r["save_folder"] / r["phy_file_name"]).stat().st_size == r[
            "file_size"
        ]
    assert archived_rows(config.data_dir)[0]["folder_path"] == "Inbox/Funds"


def test_db_name_clash_gets_a_suffix(config, graph, now):
    run_once(config)
    graph.mailbox.add_message(now + timedelta(minutes=1))
    first = run_once(config).db_path
    graph.mailbox.add_message(now + timedelta(minutes=2))
    second = run_once(config).db_path  # same minute, same name wanted
    assert first != second
    if first.stem[:18] == second.stem[:18]:
        assert second.stem.endswith("_2")
    with sqlite3.connect(first) as conn:
        assert conn.execute("SELECT count(*) FROM fund_mail").fetchone() == (1,)


def test_every_archived_db_is_queued_for_delivery(config, graph, now):
    run_once(config)
    graph.mailbox.add_message(now + timedelta(minutes=1))
    result = run_once(config)
    index = ArchiveIndex(config.data_dir)
    try:
        assert index.queued() == [index.relative(result.db_path)]
    finally:
        index.close()


@pytest.mark.parametrize("command", ["once", "day"])
def test_the_next_page_is_fetched_while_the_current_one_is_written(config, graph, now, command):
    paged = dataclasses.replace(config, page_size=100)
    if command == "once":
        run_once(paged)  # the baseline, on an empty mailbox
        start = now - timedelta(minutes=10)
    else:
        start = datetime(2025, 6, 30, 9, tzinfo=config.tz)
    for i in range(300):
        graph.mailbox.add_message(start + timedelta(seconds=i))
    # Slow folder lookups keep the engine busy with the first page.
    graph.add_fault("slow", target="folder", times=2, delay=0.5)
    graph.reset_log()
    if command == "once":
        result = run_once(paged)
    else:
        result = run_day(paged, start.date())
    assert result.messages == 300
    lists, folders = graph.records("list"), graph.records("folder")
    # 300 messages a second apart, 100 a page: each follow-up page re-reads the boundary
    # second of the page before, so 3 pages' worth takes a 4th request.
    assert len(lists) == 4 and len(folders) == 2
    # The second page was asked for before the engine had the first page's folder names.
    assert lists[1].started < folders[0].finished
    assert len(archived_rows(config.data_dir)) == 300


def test_a_page_without_attachments_is_written_before_the_next_page_is_asked_for(config, graph):
    """The pipeline holds a chunk back only while its downloads run: rows of a page without
    attachments go in at once, not when the next page arrives."""
    from fund_mail.engine import Archiver, DayWork, open_graph

    written: list[int] = []

    class Recording(Archiver):
        def _add_rows(self, batch, plans, pending, result):
            super()._add_rows(batch, plans, pending, result)
            written.append(len(batch))

    def message(n: int) -> dict:
        return {"id": f"AAMk-{n}", "subject": f"m{n}", "receivedDateTime": "2025-06-30T01:00:00Z"}

    asked: list[int] = []

    def pages():
        yield [message(n) for n in range(150)]
        asked.append(sum(written))  # rows written when the second page is asked for
        yield [message(n) for n in range(150, 200)]

    config.data_dir.mkdir(parents=True)
    index = ArchiveIndex(config.data_dir)
    try:
        archiver = Recording(config, open_graph(config), index, "day")
        work = DayWork(None, "2025_06_30", "fm_test", pages())
        [(_, result)] = list(archiver.archive_days([work], dedupe=False))
    finally:
        index.close()
    assert asked == [150] and result.messages == 200
