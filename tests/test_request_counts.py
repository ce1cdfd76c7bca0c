"""Request-count regression: Graph's budget is per request, so counts are the contract.
(Counts only; wall-clock figures live in benchmarks/.)"""

import random
from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from fund_mail.emulator import file_attachment
from fund_mail.engine import run_day, run_days, run_once
from fund_mail.graph.discovery import CACHE_NAME


def by_target(graph):
    return Counter(r.target for r in graph.records())


def test_idle_cycle_makes_two_requests_with_the_discovery_answer_cached(config, graph, now):
    graph.mailbox.add_message(now - timedelta(hours=1))
    run_once(config)  # the baseline: discovery, token, one list page
    assert by_target(graph) == {"discovery": 1, "token": 1, "list": 1}
    graph.reset_log()
    run_once(config)  # a new process-like run: new msal app, new token, discovery from disk
    assert by_target(graph) == {"token": 1, "list": 1}
    (config.data_dir / CACHE_NAME).unlink()
    graph.reset_log()
    run_once(config)  # without the cached answer: 3
    assert by_target(graph) == {"discovery": 1, "token": 1, "list": 1}


def test_new_mail_costs_list_pages_plus_attachment_downloads_only(config, graph, now):
    run_once(config)
    rng = random.Random(7)
    with_files = set(rng.sample(range(1000), 300))
    expected_downloads = 0
    for i in range(1000):
        count = rng.randint(1, 3) if i in with_files else 0
        expected_downloads += count
        graph.mailbox.add_message(
            now + timedelta(seconds=i % 50),
            folder="inbox" if i % 2 else "sentitems",
            attachments=[file_attachment(f"{i}-{n}.pdf", b"%PDF" * 10) for n in range(count)],
        )
    graph.reset_log()
    result = run_once(config)
    assert result.messages == 1000
    counts = by_target(graph)
    assert counts["list"] == 1, "bodies and attachment metadata come with the list page"
    assert counts["attachment"] == expected_downloads
    assert counts["message"] == 0, "no per-message request"
    # Folder paths: sentitems (which also names the root), then one per other folder (Inbox).
    assert counts["folder"] == 2
    assert graph.max_in_flight <= 4


def test_one_day_of_5000_messages_is_six_list_pages(config, graph):
    seoul = ZoneInfo("Asia/Seoul")
    start = datetime(2025, 6, 30, 0, 0, 5, tzinfo=seoul)
    for i in range(5000):
        graph.mailbox.add_message(start + timedelta(seconds=i * 17))
    result = run_day(config, date(2025, 6, 30))
    counts = by_target(graph)
    assert result.messages == 5000
    # The newest and the oldest page, then the 3,000 between them in 4 slices of about 750
    # (each aims at 80% of a page) side by side: 6 pages for a floor of 5.
    assert counts["list"] == 6 and counts["message"] == 0 and counts["attachment"] == 0
    assert counts == {"discovery": 1, "token": 1, "folder": 2, "list": 6}


def add_day(graph, day, count, with_files):
    """count messages over a Seoul day, with_files of them with one attachment each."""
    start = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo("Asia/Seoul"))
    step = 86_000 // count
    for i in range(count):
        files = i * with_files // count != (i + 1) * with_files // count
        graph.mailbox.add_message(
            start + timedelta(seconds=1 + i * step),
            attachments=[file_attachment(f"{i}.pdf", b"%PDF" * 10)] if files else [],
        )


def test_one_day_of_1000_messages_with_600_attachments_is_the_floor_and_its_oldest_page(
    config, graph
):
    add_day(graph, date(2025, 6, 30), 1000, 600)
    result = run_day(config, date(2025, 6, 30))
    assert result.messages == 1000 and result.attachments == 600
    # Sign-in, one list page, Sent Items and Inbox, and one request per attachment; and the
    # day's oldest page, asked for beside its newest in case the day holds more than a page.
    assert by_target(graph) == {
        "discovery": 1,
        "token": 1,
        "list": 2,
        "folder": 2,
        "attachment": 600,
    }


def test_a_range_signs_in_once_and_looks_folders_up_once(config, graph):
    first = date(2025, 6, 23)
    days = [first + timedelta(days=n) for n in range(7)]
    for day in days:
        add_day(graph, day, 100, 60)
    outcome = run_days(config, days)
    assert outcome.total.messages == 700 and outcome.total.attachments == 420
    assert not outcome.failed
    # One sign-in and one lookup per folder for the whole range; one list page per day, and
    # each day's oldest page beside it.
    assert by_target(graph) == {
        "discovery": 1,
        "token": 1,
        "list": 14,
        "folder": 2,
        "attachment": 420,
    }
    assert graph.max_in_flight <= 4
