"""The Graph client's transport policy, measured from the emulator's request log."""

import dataclasses
import itertools
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from fund_mail.emulator import file_attachment
from fund_mail.errors import AccessDeniedError, GraphError
from fund_mail.graph.auth import TokenProvider
from fund_mail.graph.client import GraphClient, read_ahead
from fund_mail.graph.paging import Window

LIST_WINDOW = Window(datetime(2000, 1, 1, tzinfo=UTC))


@pytest.fixture
def client(config):
    return GraphClient(config, TokenProvider(config), backoff=0.01)


def all_messages(client, page_size=1000):
    return [m for page in client.fetch_message_pages(LIST_WINDOW, page_size) for m in page]


def test_429_waits_at_least_retry_after(client, graph, now):
    graph.mailbox.add_message(now)
    graph.add_fault("throttle", target="list", times=2, retry_after="0.4")
    assert len(all_messages(client)) == 1
    lists = graph.records("list")
    assert [r.status for r in lists] == [429, 429, 200]
    for throttled, retry in itertools.pairwise(lists):
        assert retry.started - throttled.finished >= float(throttled.retry_after)


def test_503_and_504_are_retried(client, graph, now):
    graph.mailbox.add_message(now)
    graph.add_fault("unavailable", target="list", times=1, retry_after="0.05")
    graph.add_fault("gateway_timeout", target="list", times=1)
    assert len(all_messages(client)) == 1
    assert [r.status for r in graph.records("list")] == [503, 504, 200]


def test_throttling_that_never_ends_is_an_error_not_a_hang(client, graph, now):
    graph.add_fault("throttle", target="list", times=None, retry_after="0")
    with pytest.raises(GraphError, match="429"):
        all_messages(client)


def test_connection_reset_mid_body_is_retried(client, graph, now):
    graph.mailbox.add_message(now)
    graph.add_fault("reset", target="list", times=2)
    assert len(all_messages(client)) == 1
    assert len(graph.records("list")) == 3


def test_slow_response_beyond_the_timeout_is_retried(graph, config, now):
    config = dataclasses.replace(config, http_timeout=1.0)
    client = GraphClient(config, TokenProvider(config), backoff=0.01)
    graph.mailbox.add_message(now)
    graph.add_fault("slow", target="list", times=1, delay=2.5)
    assert len(all_messages(client)) == 1
    assert len(graph.records("list")) == 2


def test_expired_token_mid_run_is_renewed_once(client, graph, now):
    graph.mailbox.add_message(now)
    all_messages(client)
    graph.expire_tokens()
    assert len(all_messages(client)) == 1
    statuses = [(r.target, r.status) for r in graph.records() if r.target != "discovery"]
    assert statuses[-3:] == [("list", 401), ("token", 200), ("list", 200)]


def test_token_is_reused_within_its_lifetime(client, graph, now):
    graph.mailbox.add_message(now)
    for _ in range(3):
        all_messages(client)
    assert len(graph.records("token")) == 1


def test_short_lived_tokens_are_renewed_before_expiry(graph, config, now):
    graph.token_lifetime = 290  # under msal's 5-minute refresh margin: renewed every call
    client = GraphClient(config, TokenProvider(config), backoff=0.01)
    graph.mailbox.add_message(now)
    all_messages(client)
    all_messages(client)
    assert len(graph.records("token")) == 2
    assert all(r.status == 200 for r in graph.records("list"))


def test_at_most_four_requests_in_flight(graph, config, now, tmp_path):
    graph.latency = 0.05
    graph.concurrency_limit = 4
    message = graph.mailbox.add_message(
        now, attachments=[file_attachment(f"{i}.bin", bytes([i]) * 100) for i in range(20)]
    )
    client = GraphClient(config, TokenProvider(config), backoff=0.01)
    threads = [
        threading.Thread(
            target=client.download_attachment,
            args=(message.immutable_id, a.id, tmp_path / f"{i}.bin"),
        )
        for i, a in enumerate(message.attachments)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert graph.max_in_flight == 4
    assert all(r.status == 200 for r in graph.records("attachment"))
    assert sorted(p.stat().st_size for p in tmp_path.glob("*.bin")) == [100] * 20


def test_access_denied_explains_the_fix(client, graph):
    graph.deny_access = True
    with pytest.raises(AccessDeniedError, match="ApplicationAccessPolicy"):
        all_messages(client)


def test_every_request_carries_the_preferences(client, graph, now):
    graph.mailbox.add_message(now)
    all_messages(client)
    record = graph.records("list")[0]
    assert record.query["$orderby"] == "receivedDateTime desc"
    assert record.query["$top"] == "1000"
    assert record.query["$expand"].startswith("attachments($select=")
    assert "contentBytes" not in record.query["$expand"]


def test_download_streams_to_disk_and_leaves_no_partial_file(client, graph, now, tmp_path):
    message = graph.mailbox.add_message(
        now, attachments=[file_attachment("big.bin", synthetic_size=5 * 1024 * 1024 + 7)]
    )
    graph.add_fault("reset", target="attachment", times=1)
    size = client.download_attachment(
        message.immutable_id, message.attachments[0].id, tmp_path / "big.bin"
    )
    assert size == (tmp_path / "big.bin").stat().st_size == 5 * 1024 * 1024 + 7
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("big")] == ["big.bin"]


def test_list_follows_next_links(client, graph, now):
    for i in range(25):
        graph.mailbox.add_message(now - timedelta(seconds=i))
    assert len(all_messages(client, page_size=10)) == 25
    assert len(graph.records("list")) == 3


def test_retries_are_not_nested(graph, config, now):
    """urllib3 already retried a request that never answers; the body-retry loop must not
    repeat the whole series (1 try + 5 read retries, not 5 x 6)."""
    config = dataclasses.replace(config, http_timeout=1.0)
    client = GraphClient(config, TokenProvider(config), backoff=0.001)
    graph.add_fault("slow", target="list", times=None, delay=1.3)
    with pytest.raises(GraphError):
        all_messages(client)
    assert len(graph.records("list")) == 6


# -- read-ahead ----------------------------------------------------------------------------
def test_read_ahead_yields_every_page_in_order():
    assert list(read_ahead(iter([[1], [2, 3], []]))) == [[1], [2, 3], []]
    assert list(read_ahead(iter([]))) == []


def test_read_ahead_fetches_the_next_page_while_the_caller_works():
    next_page_started = threading.Event()

    def pages():
        yield ["first"]
        next_page_started.set()
        yield ["second"]

    reader = read_ahead(pages())
    assert next(reader) == ["first"]
    # The caller has not asked for the second page yet; it is already being fetched.
    assert next_page_started.wait(timeout=10)
    assert next(reader) == ["second"]


def test_read_ahead_raises_the_fetch_error_where_it_happened():
    def pages():
        yield ["first"]
        raise GraphError("Graph answered 500", 500)

    reader = read_ahead(pages())
    assert next(reader) == ["first"]
    with pytest.raises(GraphError, match="500"):
        next(reader)


def test_read_ahead_stops_after_one_extra_page_when_the_caller_stops():
    fetched = []

    def pages():
        for number in range(10):
            fetched.append(number)
            yield [number]

    reader = read_ahead(pages())
    assert next(reader) == [0]
    reader.close()
    assert fetched == [0, 1]


def test_read_ahead_over_the_client_fetches_each_page_once(client, graph, now):
    for second in range(30):
        graph.mailbox.add_message(now - timedelta(seconds=second))
    pages = read_ahead(client.fetch_message_pages(LIST_WINDOW, 7))
    assert sum(len(page) for page in pages) == 30
    lists = graph.records("list")
    assert len(lists) == 5 and all(r.status == 200 for r in lists)


class SlowCount(int):
    """An int whose addition lets other threads run mid-way, as a free-threaded build or a
    busier process would: an unlocked `count += 1` then loses increments."""

    def __add__(self, other):
        time.sleep(0)
        return SlowCount(int(self) + other)


def test_request_count_is_exact_with_many_threads(config, monkeypatch):
    """Every request is counted once, whichever thread sends it."""

    class Answer:
        status_code = 200
        url = "https://graph.example/v1.0/users/x/messages"
        headers: dict = {}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def iter_content(self, size):
            yield b"{}"

        def json(self):
            return {}

    def transport(*args, **kwargs):
        return Answer()

    class Tokens:
        def token(self, force_refresh=False):
            return "t"

        bearer = token  # the client asks for the cached string

    client = GraphClient(config, Tokens(), backoff=0.01)
    monkeypatch.setattr(client, "_get", transport)
    monkeypatch.setattr(client, "_requests_made", SlowCount(0))
    start = threading.Barrier(8)

    def send_many():
        start.wait()
        for _ in range(500):
            client.get_json(f"{client.mailbox_url}/messages")

    threads = [threading.Thread(target=send_many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.requests_made == 8 * 500
