"""Request-count regression: Graph's budget is per request, so counts are the contract.
(Counts only; wall-clock figures live in benchmarks/.)"""

import random
from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from fund_mail.emulator import file_attachment
from fund_mail.engine import run_day, run_once


def by_target(graph):
    return Counter(r.target for r in graph.records())


def test_idle_cycle_makes_three_requests(config, graph, now):
    graph.mailbox.add_message(now - timedelta(hours=1))
    run_once(config)
    graph.reset_log()
    run_once(config)  # a new process-like run: new msal app, new token
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
    # Offset-free paging re-reads the boundary second of each page (here one message each):
    # 1,000 + 4 x 999 = 4,996 new messages in five pages, so a sixth lists the last four.
    assert counts["list"] == 6 and counts["message"] == 0 and counts["attachment"] == 0
