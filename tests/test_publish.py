"""The commit protocol's exclusive publish: an id that another command archived while this
run was writing is left out of this run's DB, so no race leaves it in two DBs."""

from collections import Counter
from datetime import date, datetime

from fund_mail import crashpoints
from fund_mail.engine import run_day, run_once
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
