"""The archiving commands: fund_mail_once (the cursor, its baseline and its scan) and
fund_mail_one_day over one day or a range of days."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from fund_mail import crashpoints
from fund_mail.archive.cursor import Cursor, read_cursor, set_aside, write_cursor
from fund_mail.archive.index import ArchiveIndex
from fund_mail.archive.rows import graph_time, parse_graph_time, unstorable_reason
from fund_mail.config import Config
from fund_mail.engine.archiver import Archiver, DayWork
from fund_mail.engine.audit import self_audit
from fund_mail.engine.plan import FUTURE_SKEW, day_bounds, next_cursor, plan_scan
from fund_mail.engine.ranges import RangeResult, settle_range
from fund_mail.engine.results import RunResult, received
from fund_mail.engine.session import exclusive_index, open_graph
from fund_mail.engine.upkeep import refresh_manifests
from fund_mail.errors import StateError
from fund_mail.graph.client import GraphClient, ListAhead, read_ahead
from fund_mail.graph.paging import EPOCH, Window

log = logging.getLogger(__name__)

BASELINE_PAGE = 50


@dataclass
class Newest:
    """The newest message a scan saw, archived or not: it may become the cursor."""

    now: datetime
    message: dict | None = None
    future: int = 0

    def track(self, pages: Iterable[list[dict]]) -> Iterator[list[dict]]:
        for page in pages:
            for message in page:
                if unstorable_reason(message):
                    continue  # quarantined: it cannot be the cursor
                try:
                    moment = received(message)
                except (KeyError, TypeError, ValueError, OverflowError):
                    continue  # no usable date: it cannot be the cursor
                if moment > self.now + FUTURE_SKEW:
                    self.future += 1
                    continue
                if self.message is None or moment > received(self.message):
                    self.message = message
            yield page


def _load_cursor(config: Config, since: datetime | None) -> Cursor | None:
    try:
        return read_cursor(config.data_dir)
    except StateError:
        if since is None:
            raise
        kept = set_aside(config.data_dir / "LAST_TIME.json")
        log.warning("LAST_TIME.json was unreadable; kept as %s and restarting from --since", kept)
        return None


def establish_baseline(client: GraphClient, index: ArchiveIndex) -> Cursor:
    """First run: remember the newest message (and any in the same second) without archiving."""
    newest: dict | None = None
    same_second: list[tuple[str, str]] = []
    for page in client.fetch_message_pages(Window(EPOCH), BASELINE_PAGE):
        for message in page:
            newest = newest or message
            if received(message) != received(newest):
                break
            same_second.append((message["id"], message["receivedDateTime"]))
        else:
            if page:
                continue  # the whole page shares one second: look at the next
        break
    if newest is None:
        # An empty mailbox: whatever appears later arrived after the baseline, whatever its date.
        return Cursor(last_email_id="", last_fetch_time=EPOCH, archive_floor=EPOCH)
    index.record_baseline(same_second)
    moment = received(newest)
    return Cursor(newest["id"], moment, newest.get("subject") or "", archive_floor=moment)


def _cursor_from_index(index: ArchiveIndex) -> Cursor | None:
    newest = index.newest_archived()
    if newest is None:
        return None
    log.warning("LAST_TIME.json is missing; resuming from the archive index")
    # The baseline's own time is the floor again, so the overlap window is kept.
    floor = index.baseline_time()
    return Cursor(
        newest[0],
        parse_graph_time(newest[1]),
        archive_floor=parse_graph_time(floor) if floor else EPOCH,
    )


def run_once(
    config: Config,
    since: datetime | None = None,
    client: GraphClient | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RunResult:
    """One incremental run: archive everything new since the cursor, exactly once; then the
    daily self-audit when it is due."""
    started = time.monotonic()
    run_time = now()
    with exclusive_index(config, "once", "fund_mail_once") as index:
        cursor = _load_cursor(config, since)
        client = client or open_graph(config)
        if cursor is None and since is None and index.has_archived():
            cursor = _cursor_from_index(index)
        if cursor is None and since is None:
            cursor = establish_baseline(client, index)
            write_cursor(config.data_dir, cursor, config.tz)
            if cursor.last_email_id:
                log.info(
                    "Baseline recorded at %s (%s); mail after it will be archived",
                    graph_time(cursor.last_fetch_time),
                    cursor.title,
                )
            else:
                log.info(
                    "Baseline recorded: the mailbox is empty, so all mail that "
                    "arrives from now on will be archived"
                )
            return RunResult(
                baseline=True, seconds=time.monotonic() - started, requests=client.requests_made
            )
        if (
            since is None
            and cursor is not None
            and cursor.archive_floor is None
            and not index.has_archived()
        ):
            # A LAST_TIME.json from the previous tool: it archived up to its cursor.
            index.record_baseline([(cursor.last_email_id, graph_time(cursor.last_fetch_time))])
        plan = plan_scan(cursor, since, timedelta(minutes=config.overlap_minutes))
        newest = Newest(run_time)
        pages = read_ahead(client.fetch_sliced_pages(Window(plan.scan_from), config.page_size))
        local = run_time.astimezone(config.tz)
        result = Archiver(config, client, index, "once").archive(
            newest.track(pages),
            day_folder=local.strftime("%Y_%m_%d"),
            stem=local.strftime("fm_%Y_%m_%d_%H%M"),
            dedupe=True,
        )
        crashpoints.reached("db-published")
        if newest.future:
            log.warning(
                "%d message(s) carry a receivedDateTime in the future; archived, but the "
                "cursor does not move to them",
                newest.future,
            )
        # The DBs are durable and recorded; only now may the cursor move.
        write_cursor(
            config.data_dir, next_cursor(cursor, plan, newest.message, run_time), config.tz
        )
        self_audit(config, client, index, local, plan.floor)
        refresh_manifests(config, index)
        result.seconds = time.monotonic() - started
        result.requests = client.requests_made
        return result


def run_day(
    config: Config,
    day: date,
    client: GraphClient | None = None,
    on_page: Callable[[int], None] | None = None,
) -> RunResult:
    """Archive every message received in one local day into its own DB.

    It never reads or moves the incremental cursor and has its own lock, so it can run while
    fund_mail_once runs on schedule. A day archived twice gets a second, complete DB.
    """
    started = time.monotonic()
    outcome = run_days(
        config,
        [day],
        client=client,
        on_page=(lambda count, _: on_page(count)) if on_page else None,
        resume=False,
    )
    if outcome.failed:
        raise outcome.errors[0]
    outcome.total.seconds = time.monotonic() - started
    return outcome.total


LIST_AHEAD_PAGES = 4  # list pages held ahead of the writer: the next days' first pages


def run_days(
    config: Config,
    days: list[date],
    *,
    client: GraphClient | None = None,
    on_page: Callable[[int, date], None] | None = None,
    on_day: Callable[[date, RunResult], None] | None = None,
    resume: bool = True,
) -> RangeResult:
    """fund_mail_one_day over days, as one job: one sign-in, one folder lookup per folder, one
    download pipeline, and day k+1 listed while day k's attachments download. Each day still
    gets its own DBs, and a failed day does not stop the others (run_range's policy).

    resume: skip the days an earlier, unfinished run of the same range completed (the index
    records each finished day); a range that ends without a failed day forgets them.
    """
    run_time = datetime.now(config.tz)
    with exclusive_index(config, "day", "fund_mail_one_day") as index:
        key = f"{days[0]}..{days[-1]}"
        done = set(index.finished_days(key)) if resume else set()
        if done:
            log.info("%d day(s) of this range were finished by an earlier run; skipped", len(done))
        todo = [d for d in days if d.isoformat() not in done]
        client = client or open_graph(config)

        def listing(day: date) -> Callable[[], Iterator[list[dict]]]:
            start, end = day_bounds(day, config)
            return lambda: client.fetch_sliced_pages(Window(start, end), config.page_size)

        ahead = ListAhead([listing(d) for d in todo], LIST_AHEAD_PAGES)
        works = [
            DayWork(
                d,
                d.strftime("%Y_%m_%d"),
                f"fm_{d.strftime('%Y_%m_%d')}_{run_time.strftime('%H%M')}",
                _counted(ahead.pages(n), d, on_page),
            )
            for n, d in enumerate(todo)
        ]

        def finished(day: date, result: RunResult) -> None:
            refresh_manifests(config, index)
            if resume:
                index.record_finished_day(key, day.isoformat())
            if on_day is not None:
                on_day(day, result)

        try:
            archiver = Archiver(config, client, index, "day")
            if todo:
                archiver.folders.ahead()  # a whole day almost always has mail
            outcomes = archiver.archive_days(works, dedupe=False)
            # A range's works are days; only a run's window has none.
            outcome = settle_range(((w.day, o) for w, o in outcomes if w.day), finished)
        finally:
            ahead.close()
        if resume and not outcome.failed:
            index.forget_finished_days(key)
        outcome.total.requests = client.requests_made
        return outcome


def _counted(
    pages: Iterator[list[dict]], day: date, on_page: Callable[[int, date], None] | None
) -> Iterator[list[dict]]:
    for page in pages:
        if on_page is not None:
            on_page(len(page), day)
        yield page
