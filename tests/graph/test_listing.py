"""A day's listing against the emulator: both ends side by side, slices between them, and one
set of keep-alive connections for every thread that asks."""

from concurrent.futures import Future
from datetime import datetime, timedelta

import pytest

from fund_mail.graph.auth import TokenProvider
from fund_mail.graph.client import GraphClient, _settled
from fund_mail.graph.paging import Window
from fund_mail.graph.retry import GRAPH_STATUS_ATTEMPTS

START = datetime(2025, 6, 29, 15, 0, 0).astimezone()
END = START + timedelta(days=1)


def add_day(graph, count):
    step = 86_000 // count
    return [
        graph.mailbox.add_message(START + timedelta(seconds=1 + i * step)) for i in range(count)
    ]


def listed_ids(client, window, page_size=1000):
    return [m["id"] for page in client.fetch_sliced_pages(window, page_size) for m in page]


@pytest.fixture
def client(config):
    client = GraphClient(config, TokenProvider(config), backoff=0.01)
    yield client
    client.close()


def lists(graph):
    return graph.records("list")


def test_a_day_asks_for_its_newest_and_oldest_pages_side_by_side(graph, client):
    messages = add_day(graph, 2500)
    graph.latency = 0.1
    ids = listed_ids(client, Window(START, END))
    assert sorted(ids) == sorted(m.immutable_id for m in messages)
    first, second = sorted(lists(graph), key=lambda r: r.started)[:2]
    assert {first.query["$orderby"], second.query["$orderby"]} == {
        "receivedDateTime desc",
        "receivedDateTime asc",
    }
    assert second.started < first.finished, "the two ends were in flight at once"


def test_two_ends_that_overlap_list_the_day_with_no_slice(graph, client):
    messages = add_day(graph, 1500)
    ids = listed_ids(client, Window(START, END))
    assert sorted(ids) == sorted(m.immutable_id for m in messages), "each message once"
    assert len(lists(graph)) == 2


def test_an_open_window_asks_for_its_oldest_page_only_when_more_follow(graph, client):
    add_day(graph, 10)
    assert len(listed_ids(client, Window(START))) == 10
    assert [r.query["$orderby"] for r in lists(graph)] == ["receivedDateTime desc"]


def test_an_end_page_sent_ahead_that_fails_is_asked_again(graph, client):
    messages = add_day(graph, 2500)
    # Every attempt of the first oldest-first request fails; asked again, it is answered.
    graph.add_fault(
        "unavailable", target="list", times=GRAPH_STATUS_ATTEMPTS + 1, query_contains="asc"
    )
    ids = listed_ids(client, Window(START, END))
    assert sorted(ids) == sorted(m.immutable_id for m in messages)
    oldest = [r for r in lists(graph) if r.query["$orderby"] == "receivedDateTime asc"]
    assert [r.status for r in oldest][-1] == 200 and 503 in [r.status for r in oldest]
    # The second ask covers what the newest page left, not the whole day.
    assert oldest[-1].query["$filter"] != oldest[0].query["$filter"]


def test_every_thread_shares_the_process_connections(graph, client, config):
    add_day(graph, 5000)
    graph.latency = 0.02
    assert len(listed_ids(client, Window(START, END))) == 5000
    # Two end pages, then slices, each on a thread of its own: with one session per thread
    # each would open a connection (and a TLS handshake) of its own.
    assert len(lists(graph)) >= 6
    ports = {r.client_port for r in lists(graph)}
    assert len(ports) <= config.max_concurrency


def test_settled_gives_the_answer_or_none():
    answered, failed = Future(), Future()
    answered.set_result("page")
    failed.set_exception(OSError("reset"))
    assert _settled(answered) == "page"
    assert _settled(failed) is None
    assert _settled(None) is None
