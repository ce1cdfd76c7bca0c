"""People use the mailbox while a run pages through it: nothing is lost, nothing duplicated.

The emulator changes the mailbox when a chosen list request arrives (`graph.on_request`), so
each test acts at an exact page. With $skip paging put back, the deletion tests lose exactly
the messages the deletions shifted past.
"""

import dataclasses
from collections import Counter
from datetime import date, datetime, timedelta

import pytest

from fund_mail.engine import run_day, run_once
from fund_mail.errors import GraphError
from fund_mail.graph.auth import TokenProvider
from fund_mail.graph.client import GraphClient
from tests.helpers import archived_ids, archived_rows

PAGE = 100
DAY = date(2025, 6, 30)


def assert_exactly_once(data_dir, expected):
    found = archived_ids(data_dir)
    duplicates = [i for i, n in Counter(found).items() if n > 1]
    assert not duplicates, f"archived twice: {duplicates[:3]}"
    missing = set(expected) - set(found)
    assert not missing, f"{len(missing)} message(s) never archived"
    assert sorted(found) == sorted(expected)


def newest_first(messages):
    return sorted(messages, key=lambda m: (m.received, m.immutable_id), reverse=True)


def add_run(graph, start, count, **fields):
    return [graph.mailbox.add_message(start + timedelta(seconds=i), **fields) for i in range(count)]


def delete_on_list_request(graph, victims, nth=2):
    """A user deletes messages a page listed, just before the nth list request arrives."""

    def delete(mailbox):
        for message in victims:
            mailbox.delete(message)

    return graph.on_request(delete, target="list", nth=nth)


@pytest.fixture
def paged(config):
    return dataclasses.replace(config, page_size=PAGE)


def kst(config, day, hour, minute=0):
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=config.tz)


def test_once_deletions_after_the_first_page_lose_nothing(paged, graph, now):
    run_once(paged)  # baseline on an empty mailbox
    messages = add_run(graph, now - timedelta(minutes=10), 300)
    first_page = newest_first(messages)[:PAGE]
    change = delete_on_list_request(graph, first_page[:30])
    result = run_once(paged)
    assert change.fired.is_set()
    # The deleted ones were listed (and archived) before they went; none of the others is lost.
    assert result.messages == 300
    assert_exactly_once(paged.data_dir, [m.immutable_id for m in messages])


def test_one_day_deletions_after_the_first_pages_lose_nothing(paged, graph):
    messages = add_run(graph, kst(paged, DAY, 9), 300)
    # A day asks for its newest and oldest pages side by side (requests 1 and 2, in either
    # order); the deletion comes after both, before the pages between them.
    change = delete_on_list_request(graph, newest_first(messages)[:30], nth=3)
    result = run_day(paged, DAY)
    assert change.fired.is_set() and result.messages == 300
    assert_exactly_once(paged.data_dir, [m.immutable_id for m in messages])


def test_a_range_with_deletions_on_each_day_loses_nothing(paged, graph):
    days = [DAY, DAY + timedelta(days=1)]
    by_day = {day: add_run(graph, kst(paged, day, 9), 250) for day in days}
    for n, day in enumerate(days):
        # After each day's two end pages, which go side by side, and before the 50 messages
        # between them: requests 3 and 6 (3 pages a day).
        delete_on_list_request(graph, newest_first(by_day[day])[:40], nth=3 + 3 * n)
    for day in days:
        assert run_day(paged, day).messages == 250
    assert_exactly_once(paged.data_dir, [m.immutable_id for ms in by_day.values() for m in ms])


def test_moves_mid_paging_are_archived_once_with_their_new_folder(paged, graph, now):
    run_once(paged)
    messages = add_run(graph, now - timedelta(minutes=10), 300)
    ordered = newest_first(messages)
    listed, unlisted = ordered[:20], ordered[150:170]

    def move(mailbox):
        for message in listed + unlisted:
            mailbox.move(message, "deleteditems")

    graph.on_request(move, target="list", nth=2)
    run_once(paged)
    assert_exactly_once(paged.data_dir, [m.immutable_id for m in messages])
    folders = {r["email_id"]: r["folder_path"] for r in archived_rows(paged.data_dir)}
    assert {folders[m.immutable_id] for m in unlisted} == {"Deleted Items"}


def test_new_arrivals_mid_paging_are_archived_once_by_the_next_run(paged, graph, now):
    run_once(paged)
    messages = add_run(graph, now - timedelta(minutes=10), 300)
    arrivals = []
    graph.on_request(
        lambda mailbox: arrivals.extend(
            mailbox.add_message(now + timedelta(seconds=i)) for i in range(60)
        ),
        target="list",
        nth=2,
    )
    run_once(paged)
    run_once(paged)
    assert len(arrivals) == 60
    assert_exactly_once(paged.data_dir, [m.immutable_id for m in messages + arrivals])


@pytest.mark.parametrize("command", ["once", "day"])
def test_2500_messages_in_one_second(config, graph, now, command):
    if command == "once":
        run_once(config)
        second = (now - timedelta(minutes=1)).astimezone(config.tz)
    else:
        second = kst(config, DAY, 12)
    neighbours = [graph.mailbox.add_message(second - timedelta(seconds=s)) for s in (1, 2)]
    burst = [graph.mailbox.add_message(second) for _ in range(2500)]
    neighbours.append(graph.mailbox.add_message(second + timedelta(seconds=1)))
    graph.reset_log()
    result = run_once(config) if command == "once" else run_day(config, DAY)
    assert result.messages == 2503
    assert_exactly_once(config.data_dir, [m.immutable_id for m in burst + neighbours])
    # 2,503 messages: 3 pages' worth, plus 1 for the one boundary second that spans pages.
    # A day also asks for its oldest page beside its newest, which the walk of one second
    # does not use.
    assert len(graph.records("list")) <= (4 if command == "once" else 5)


def test_deletions_inside_a_one_second_walk_restart_that_second(config, graph, now):
    run_once(config)
    second = now - timedelta(minutes=1)
    burst = [graph.mailbox.add_message(second) for _ in range(2500)]
    in_order = sorted(burst, key=lambda m: m.immutable_id)  # the emulator's order within a second
    # After the first page (1,000 of the second), 100 listed ones go: more than the overlap.
    delete_on_list_request(graph, in_order[:100])
    result = run_once(config)
    assert result.messages == 2500
    assert_exactly_once(config.data_dir, [m.immutable_id for m in burst])
    moment = second.strftime("%Y-%m-%dT%H:%M:%SZ")
    walk = f"receivedDateTime ge {moment} and receivedDateTime le {moment}"
    restarts = [
        r
        for r in graph.records("list")
        if r.query["$filter"].startswith(walk) and "$skip" not in r.query
    ]
    assert restarts, "the second was walked again from its start"


def test_the_token_never_leaves_graph_url(config, graph):
    client = GraphClient(config, TokenProvider(config), backoff=0.01)
    host = graph.url.split("//", 1)[1]
    for url in ("https://evil.example/v1.0/users/x/messages", f"http://{host}/v1.0/users/x"):
        with pytest.raises(GraphError, match="only https://"):
            client.get_json(url)
    sent = [r for r in graph.records() if r.target not in ("discovery", "token")]
    assert sent == [], "no Graph request went out"
