"""The sync engine: one shared core behind fund_mail_once, fund_mail_one_day and the audit.

Decisions are pure functions at the top of this file (the scan window, the next cursor, which
days the self-audit covers), so they get table-driven tests. The effects below them fetch pages
from Graph, write them through Archiver into published DBs, and move the cursor last.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import TYPE_CHECKING

from fund_mail import crashpoints
from fund_mail.archive.cursor import Cursor, read_cursor, set_aside, write_cursor
from fund_mail.archive.fsutil import RunLock, command_lock, sweep_stale_partials
from fund_mail.archive.index import ArchiveIndex, AuditCounts
from fund_mail.archive.manifest import update_manifests
from fund_mail.archive.quarantine import quarantine
from fund_mail.archive.retention import RetentionReport, apply_retention
from fund_mail.archive.rows import (
    graph_time,
    message_row,
    parse_graph_time,
    received_text,
    unstorable_reason,
)
from fund_mail.archive.store import ArchiveDb
from fund_mail.config import Config
from fund_mail.errors import (
    AccessDeniedError,
    AuthError,
    ConfigError,
    GraphError,
    LockedError,
    RunFailed,
    StateError,
)
from fund_mail.graph import attachments
from fund_mail.graph.auth import TokenProvider, Tokens
from fund_mail.graph.client import ID_FIELDS, GraphClient, ListAhead, read_ahead
from fund_mail.graph.folders import FolderPaths
from fund_mail.graph.paging import EPOCH, Window
from fund_mail.logs import REDACTOR

if TYPE_CHECKING:
    from fund_mail.delivery import DeliveryReport

log = logging.getLogger(__name__)

# The unit of the download pipeline: a chunk's downloads are queued at once, and its rows are
# written when they are done. Small chunks keep the rows of a page written while the rest of
# the page downloads, so little is left to write after the last answer; PUBLISH_EVERY, not the
# chunk, decides when a DB is published.
STAGE_MESSAGES = 100
PIPELINE_DEPTH = 10  # chunks (a page) whose downloads are queued while an older one is written
BASELINE_PAGE = 50
AUDIT_PAGE = 1000  # the audit lists ids only: a full page costs no more than a short one
FUTURE_SKEW = timedelta(minutes=5)  # a receivedDateTime further ahead never becomes the cursor
# Failures that no other day of a range could escape: stop the range instead of repeating them.
SYSTEMIC = (AuthError, AccessDeniedError, ConfigError, LockedError, StateError)


# -- pure planning ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanPlan:
    """What one fund_mail_once run lists, and what it may archive."""

    floor: datetime  # nothing received before it is archived
    scan_from: datetime  # the window listed: [scan_from, now)
    last_time: datetime  # the cursor's time before the run


def plan_scan(cursor: Cursor | None, since: datetime | None, overlap: timedelta) -> ScanPlan:
    """The one place that decides a run's scan window."""
    if since is not None:
        return ScanPlan(since, since, cursor.last_fetch_time if cursor else since)
    if cursor is None:
        raise ValueError("a run without a cursor takes a baseline first")
    floor = cursor.archive_floor or cursor.last_fetch_time
    last = cursor.last_fetch_time
    return ScanPlan(floor, max(floor, last - overlap), last)


def next_cursor(
    previous: Cursor | None, plan: ScanPlan, newest: dict | None, now: datetime
) -> Cursor:
    """The cursor after a successful run: the newest message seen, never a future one.

    A receivedDateTime far ahead of the clock (a broken sender's 2099) would make every later
    scan start after all real mail, so such a message is archived but never becomes the cursor.
    """
    if newest is not None:
        moment = parse_graph_time(newest["receivedDateTime"])
        if plan.last_time <= moment <= now + FUTURE_SKEW:
            return Cursor(newest["id"], moment, newest.get("subject") or "", plan.floor)
    return Cursor(
        previous.last_email_id if previous else "",
        plan.last_time,
        previous.title if previous else "",
        plan.floor,
    )


def self_audit_days(
    now_local: datetime, audit_at: str, audit_days: int, floor: datetime | None
) -> list[date]:
    """The days the daily self-audit covers at now_local: none before AUDIT_AT, none when
    AUDIT_DAYS is 0, and never a day wholly before the archive floor (no backfill by the back
    door). Whether today's audit already ran is the caller's question."""
    hour, minute = map(int, audit_at.split(":"))
    if audit_days <= 0 or now_local.time() < clock_time(hour, minute):
        return []
    today = now_local.date()
    days = [today - timedelta(days=n) for n in range(audit_days, 0, -1)]
    if floor is not None:
        first = floor.astimezone(now_local.tzinfo).date()
        days = [d for d in days if d >= first]
    return days


def stage_sizes(count: int, staged: int, publish_every: int) -> list[int]:
    """How count new messages of a day are cut into pipeline chunks, staged messages of the day
    already being in it: at most STAGE_MESSAGES each, never straddling a multiple of
    PUBLISH_EVERY, so that each published DB holds exactly PUBLISH_EVERY messages."""
    sizes = []
    while count > 0:
        size = min(STAGE_MESSAGES, publish_every - staged % publish_every, count)
        sizes.append(size)
        staged += size
        count -= size
    return sizes


def day_bounds(day: date, config: Config) -> tuple[datetime, datetime]:
    """[00:00, 24:00) of a local day in TIMEZONE, as UTC instants (DST-safe)."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=config.tz)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=config.tz)
    return start.astimezone(UTC), end.astimezone(UTC)


# -- results ---------------------------------------------------------------------------------
@dataclass
class RunResult:
    messages: int = 0
    attachments: int = 0
    bytes: int = 0
    seconds: float = 0.0
    db_paths: list[Path] = field(default_factory=list)
    baseline: bool = False
    requests: int = 0
    quarantined: int = 0

    @property
    def db_path(self) -> Path | None:
        return self.db_paths[-1] if self.db_paths else None

    def add(self, other: RunResult) -> None:
        self.messages += other.messages
        self.attachments += other.attachments
        self.bytes += other.bytes
        self.db_paths += other.db_paths
        self.quarantined += other.quarantined

    def summary(self, command: str) -> str:
        where = str(self.db_path) if self.db_path else "no mail to archive, no DB written"
        if len(self.db_paths) > 1:
            where = f"{len(self.db_paths)} DBs, the last {self.db_path}"
        if self.baseline:
            where = "baseline recorded, nothing archived"
        if self.quarantined:
            where += f"; {self.quarantined} message(s) set aside in DATA_DIR/quarantine"
        return (
            f"{command}: {self.messages} messages, {self.attachments} attachments, "
            f"{self.bytes} bytes, {self.seconds:.1f} s, {where}"
        )


def received(message: dict) -> datetime:
    return parse_graph_time(message["receivedDateTime"])


# -- the shared core -------------------------------------------------------------------------
class Archiver:
    """Writes accepted messages, page by page, into temporary DBs and publishes them.

    command names the process's temporary files and its crash recovery ("once" or "day");
    source is what the index records as having archived the ids ("once", "day" or "audit").
    """

    def __init__(
        self,
        config: Config,
        client: GraphClient,
        index: ArchiveIndex,
        command: str,
        source: str | None = None,
    ):
        self.config = config
        self.client = client
        self.index = index
        self.command = command
        self.source = source or command
        self.folders = FolderPaths(client, config.max_concurrency)

    def archive(
        self,
        pages: Iterable[list[dict]],
        *,
        day_folder: str,
        stem: str,
        dedupe: bool,
        on_page: Callable[[int], None] | None = None,
    ) -> RunResult:
        """dedupe: skip ids the index knows, and publish each id exclusively. A DB is published
        every PUBLISH_EVERY messages, so a long catch-up that gets killed keeps its progress."""
        for _, outcome in self.archive_days(
            [DayWork(None, day_folder, stem, pages)], dedupe=dedupe, on_page=on_page
        ):
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        raise AssertionError("archive_days yields one outcome per day")

    def archive_days(
        self,
        days: Iterable[DayWork],
        *,
        dedupe: bool,
        on_page: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[DayWork, RunResult | Exception]]:
        """Archive each day's pages into that day's DBs; yield each day's result or error.

        One pipeline for all the days: a chunk's attachment downloads are queued on the
        client's workers before the chunk before it is written, across page and day boundaries,
        so the workers never drain while there is work. A day that fails (listing, download or
        write) yields its error and leaves nothing published for its unfinished chunk; the
        days after it go on.
        """
        staged: deque[_Staged | _DayState] = deque()
        states: list[_DayState] = []
        try:
            for work in days:
                state = _DayState(work, self.config.data_dir / work.day_folder)
                states.append(state)
                try:
                    for page in work.pages:
                        if state.error is not None:
                            break  # a download of this day failed: stop listing it
                        page = self._set_aside_unstorable(page, state.result)
                        batch = [m for m in page if not m.get("isDraft")]
                        if dedupe and batch:
                            known = self.index.known_ids(m["id"] for m in batch)
                            batch = [m for m in batch if m["id"] not in known]
                        if on_page:
                            on_page(len(page))
                        for chunk in _chunks(batch, state, self.config.publish_every):
                            staged.append(self._stage(state, chunk))
                            yield from self._settle(staged, dedupe, keep=PIPELINE_DEPTH)
                except Exception as e:  # noqa: BLE001 - this day failed; the caller decides
                    state.fail(e)
                staged.append(state)  # the day ends when everything staged before it settles
                yield from self._settle(staged, dedupe, keep=PIPELINE_DEPTH)
            yield from self._settle(staged, dedupe, keep=0)
        finally:
            # Stopped early (a systemic error, an interrupt): cancel what is queued, and publish
            # no unfinished DB (an ended day has none left to discard).
            for item in [*staged, *states]:
                item.abandon()

    def _settle(
        self, staged: deque[_Staged | _DayState], dedupe: bool, keep: int
    ) -> Iterator[tuple[DayWork, RunResult | Exception]]:
        """Write staged chunks oldest first until at most `keep` remain, and on while the oldest
        has nothing left to download (a chunk without attachments is written as soon as it
        comes, not a page later); yield ended days."""
        while staged and (
            not isinstance(staged[0], _Staged)
            or staged[0].downloaded()
            or sum(isinstance(i, _Staged) for i in staged) > keep
        ):
            item = staged.popleft()
            if isinstance(item, _DayState):
                yield item.work, self._end_day(item, dedupe)
            else:
                self._write(item, dedupe)

    def _stage(self, state: _DayState, batch: list[dict]) -> _Staged:
        """Look up the batch's folders and queue its downloads; the rows wait for _write."""
        self.folders.lookup(m.get("parentFolderId") for m in batch)
        plans = [attachments.plan(m, self.config.keep_mime) for m in batch]
        jobs = [job for plan in plans for job in plan.jobs]
        return _Staged(
            state,
            batch,
            plans,
            jobs,
            attachments.start(self.client, jobs, state.day_dir / "attach"),
        )

    def _write(self, staged: _Staged, dedupe: bool) -> None:
        state = staged.state
        if state.error is not None:
            staged.abandon()
            return
        try:
            state.result.bytes += attachments.finish(staged.jobs, staged.downloads)
            crashpoints.reached("attachments-downloaded")
            if state.pending is None:
                state.pending = _PendingDb(state.day_dir, self.command, state.work.stem)
            state.pending.hashes += attachments.file_hashes(staged.jobs, state.pending.save_folder)
            self._add_rows(staged.batch, staged.plans, state.pending, state.result)
            if state.pending.db.messages >= self.config.publish_every:
                pending, state.pending = state.pending, None
                self._publish(pending, state.result, dedupe)
                crashpoints.reached("chunk-published")
        except Exception as e:  # noqa: BLE001 - reported with the day
            state.fail(e)

    def _end_day(self, state: _DayState, dedupe: bool) -> RunResult | Exception:
        if state.error is None and state.pending is not None:
            pending, state.pending = state.pending, None
            try:
                self._publish(pending, state.result, dedupe)
            except Exception as e:  # noqa: BLE001 - reported with the day
                pending.db.discard()
                state.fail(e)
        return state.error if state.error is not None else state.result

    def _add_rows(
        self, batch: list[dict], plans: list, pending: _PendingDb, result: RunResult
    ) -> None:
        config = self.config
        save_folder = pending.save_folder
        sent_items_id = self.folders.sent_items_id
        rows = []
        for message, plan in zip(batch, plans, strict=True):
            try:
                row = message_row(
                    message,
                    folder_path=self.folders.path(message.get("parentFolderId")),
                    mailbox=config.email_id,
                    sent_folder_id=sent_items_id,
                    tz=config.tz,
                    notes=plan.all_notes(),
                )
            except Exception as e:  # noqa: BLE001 - one message must not block the rest
                self._quarantine(message, f"{type(e).__name__}: {e}", result)
                continue
            rows.append((row, plan.rows(save_folder)))
            pending.ids.append((row.email_id, received_text(row)))
        pending.db.add_many(rows)
        crashpoints.reached("db-partial")

    def _set_aside_unstorable(self, page: list, result: RunResult) -> list[dict]:
        """Quarantine the items that cannot become a row at all; keep the rest."""
        kept = []
        for message in page:
            reason = unstorable_reason(message)
            if reason is None:
                kept.append(message)
            else:
                self._quarantine(message, f"cannot be stored: {reason}", result)
        return kept

    def _quarantine(self, message: object, error: str, result: RunResult) -> None:
        path = quarantine(self.config.data_dir, message, error, self.command)
        if path is not None:
            result.quarantined += 1
            log.warning("A message could not be archived (%s); kept in %s", error, path)

    def _publish(self, pending: _PendingDb, result: RunResult, exclusive: bool) -> None:
        pending.db.finish()
        crashpoints.reached("db-written")
        published = self.index.publish(
            pending.db.path,
            pending.day_dir,
            pending.stem,
            self.command,
            pending.ids,
            source=self.source,
            exclusive=exclusive,
        )
        if published is None:
            return  # another command archived all of them first
        # The manifest then only hashes the DB itself; a crash before this line leaves the
        # files to update_manifests, which hashes what has no hash yet.
        self.index.record_hashes(pending.hashes)
        result.messages += pending.db.messages - published.dropped_messages
        result.attachments += pending.db.attachments - published.dropped_attachments
        result.db_paths.append(published.path)


@dataclass
class DayWork:
    """One day (or one run's window) to archive: where its DBs go and the pages listing it."""

    day: date | None
    day_folder: str
    stem: str
    pages: Iterable[list[dict]]


@dataclass
class _DayState:
    work: DayWork
    day_dir: Path
    result: RunResult = field(default_factory=RunResult)
    pending: _PendingDb | None = None
    error: Exception | None = None
    staged: int = 0  # messages handed to the pipeline so far

    def fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        if self.pending is not None:
            self.pending.db.discard()
            self.pending = None

    def abandon(self) -> None:
        if self.pending is not None:
            self.pending.db.discard()
            self.pending = None


@dataclass
class _Staged:
    """A chunk whose downloads are queued and whose rows are not yet written."""

    state: _DayState
    batch: list[dict]
    plans: list
    jobs: list[attachments.AttachmentJob]
    downloads: list[Future]

    def downloaded(self) -> bool:
        return all(future.done() for future in self.downloads)

    def abandon(self) -> None:
        for future in self.downloads:
            future.cancel()


class _PendingDb:
    """A temporary DB being filled, and the (id, received) pairs it holds."""

    def __init__(self, day_dir: Path, command: str, stem: str) -> None:
        self.day_dir = day_dir
        self.stem = stem
        self.db = ArchiveDb(day_dir / f".{command}-{stem}.{time.time_ns()}.tmp")
        self.ids: list[tuple[str, str]] = []
        self.save_folder = f"{day_dir.name}/attach"  # attachment rows' folder, under DATA_DIR
        self.hashes: list[tuple[str, int, int, str]] = []  # of its attachment files


def _chunks(batch: list[dict], state: _DayState, publish_every: int) -> Iterator[list[dict]]:
    start = 0
    for size in stage_sizes(len(batch), state.staged, publish_every):
        yield batch[start : start + size]
        start += size
    state.staged += len(batch)


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


@contextmanager
def exclusive_index(config: Config, command: str, lock_name: str) -> Iterator[ArchiveIndex]:
    """Hold the command's lock, open the index, and finish what a killed run left open."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(command_lock(config.data_dir, lock_name), lock_name):
        index = ArchiveIndex(config.data_dir)
        try:
            index.recover(command)
            sweep_stale_partials(config.data_dir)
            yield index
        finally:
            index.close()


def open_graph(config: Config, tokens: Tokens | None = None) -> GraphClient:
    tokens = tokens or TokenProvider(config)
    return GraphClient(config, tokens, backoff=config.retry_backoff)


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
        _self_audit(config, client, index, local, plan.floor)
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


# -- ranges ----------------------------------------------------------------------------------
@dataclass
class RangeResult:
    total: RunResult = field(default_factory=RunResult)
    failed: list[date] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)


def run_range(
    days: list[date],
    run_one: Callable[[date], RunResult],
    describe: Callable[[date, RunResult], str],
    after_day: Callable[[date, RunResult], None] | None = None,
) -> RangeResult:
    """Run each day in turn under settle_range's policy."""

    lines: list[str] = []

    def done(day: date, result: RunResult) -> None:
        lines.append(describe(day, result))
        if after_day is not None:
            after_day(day, result)

    outcome = settle_range(_attempts(days, run_one), done)
    outcome.lines = lines
    return outcome


def _attempts(
    days: list[date], run_one: Callable[[date], RunResult]
) -> Iterator[tuple[date, RunResult | Exception]]:
    for day in days:
        try:
            yield day, run_one(day)
        except Exception as e:  # noqa: BLE001 - settle_range decides
            yield day, e


def settle_range(
    outcomes: Iterable[tuple[date, RunResult | Exception]],
    on_done: Callable[[date, RunResult], None] | None = None,
) -> RangeResult:
    """The range policy: a failed day is listed and the others go on, unless the failure is
    systemic (sign-in, access, configuration, lock, state), which every day would repeat."""
    outcome = RangeResult()
    for day, result in outcomes:
        if isinstance(result, SYSTEMIC):
            raise result
        if isinstance(result, Exception):
            log.error("%s failed: %s", day, result)
            outcome.failed.append(day)
            outcome.errors.append(result)
            continue
        outcome.total.add(result)
        if on_done is not None:
            on_done(day, result)
    return outcome


def range_failure(outcome: RangeResult, retry_hint: str) -> RunFailed | None:
    if not outcome.failed:
        return None
    error = RunFailed(
        f"{len(outcome.failed)} day(s) failed: {', '.join(map(str, outcome.failed))}. "
        f"Run them again with {retry_hint}."
    )
    error.result = outcome.total
    return error


# -- the completeness audit ------------------------------------------------------------------
@dataclass
class DayAudit:
    day: date
    counts: AuditCounts
    result: RunResult = field(default_factory=RunResult)

    @property
    def complete(self) -> bool:
        return self.counts.missing == self.counts.repaired

    def line(self) -> str:
        c = self.counts
        verdict = "complete" if self.complete else "GAPS"
        if c.dry_run and c.missing:
            verdict = "GAPS (dry run: nothing repaired)"
        return (
            f"{self.day}: {c.in_mailbox} in the mailbox, {c.archived} already archived, "
            f"{c.missing} missing, {c.repaired} repaired: {verdict}"
        )


def audit_day(
    config: Config,
    client: GraphClient,
    index: ArchiveIndex,
    day: date,
    *,
    command: str,
    dry_run: bool = False,
    not_before: datetime | None = None,
    on_page: Callable[[int], None] | None = None,
) -> DayAudit:
    """Compare a day in the mailbox with everything ever archived; archive what is missing.

    The listing is cheap (ids only, 1,000 a page). Only missing messages are fetched whole,
    one request each, and they go into a new DB in that day's folder through the outbox.
    """
    start, end = day_bounds(day, config)
    if not_before is not None:
        start = max(start, not_before)
    listed: list[str] = []
    if start < end:
        for page in client.fetch_sliced_pages(
            Window(start, end), AUDIT_PAGE, fields=ID_FIELDS, expand=False
        ):
            listed += [
                m["id"]
                for m in page
                if isinstance(m, dict) and m.get("id") and not m.get("isDraft")
            ]
            if on_page:
                on_page(len(page))
    known = index.known_ids(listed)
    missing = [i for i in listed if i not in known]
    counts = AuditCounts(len(listed), len(known), len(missing), 0, dry_run)
    if dry_run or not missing:
        return DayAudit(day, counts)
    with ThreadPoolExecutor(config.max_concurrency, thread_name_prefix="audit") as pool:
        fetched = list(pool.map(lambda i: _fetch_if_present(client, i), missing))
    present = [m for m in fetched if m is not None]
    vanished = len(fetched) - len(present)
    if vanished:
        log.info("%s: %d missing message(s) were deleted before they could be read", day, vanished)
    result = Archiver(config, client, index, command, source="audit").archive(
        [present],
        day_folder=day.strftime("%Y_%m_%d"),
        stem=f"fm_{day.strftime('%Y_%m_%d')}_{datetime.now(config.tz).strftime('%H%M')}",
        dedupe=True,
    )
    # Archived now, by this audit or by a run that took some of them first.
    repaired = len(index.known_ids(m["id"] for m in present))
    counts = AuditCounts(
        len(listed) - vanished, len(known), len(missing) - vanished, repaired, dry_run
    )
    return DayAudit(day, counts, result)


def _fetch_if_present(client: GraphClient, message_id: str) -> dict | None:
    try:
        return client.fetch_message(message_id)
    except GraphError as e:
        if e.status == 404:
            return None  # deleted since it was listed: nothing left to archive
        raise


@dataclass
class AuditReport:
    audits: list[DayAudit] = field(default_factory=list)
    failed: list[date] = field(default_factory=list)  # the audit itself failed on these days
    total: RunResult = field(default_factory=RunResult)

    @property
    def gaps(self) -> list[date]:
        return [a.day for a in self.audits if not a.complete]


def run_audit(
    config: Config,
    days: list[date],
    *,
    dry_run: bool = False,
    on_start: Callable[[date], None] | None = None,
    on_day: Callable[[DayAudit], None] | None = None,
    on_page: Callable[[int], None] | None = None,
    client: GraphClient | None = None,
) -> AuditReport:
    """fund_mail_one_day --audit: each day in turn, under fund_mail_one_day's lock."""
    with exclusive_index(config, "day", "fund_mail_one_day") as index:
        client = client or open_graph(config)
        report = audit_range(
            config,
            index,
            days,
            lambda day: audit_day(
                config, client, index, day, command="day", dry_run=dry_run, on_page=on_page
            ),
            dry_run=dry_run,
            on_start=on_start,
            on_day=on_day,
        )
        report.total.requests = client.requests_made
        return report


def audit_range(
    config: Config,
    index: ArchiveIndex,
    days: list[date],
    audit: Callable[[date], DayAudit],
    *,
    dry_run: bool,
    on_start: Callable[[date], None] | None = None,
    on_day: Callable[[DayAudit], None] | None = None,
) -> AuditReport:
    """Audit each day with `audit` (Graph or IMAP), recording each outcome in the index and
    handing unrepaired gaps to the alerts; the day manifests follow what was repaired."""
    report = AuditReport()

    def audit_one(day: date) -> RunResult:
        if on_start:
            on_start(day)
        try:
            done = audit(day)
        except Exception as e:
            index.record_audit(day.isoformat(), "manual", AuditCounts(dry_run=dry_run), str(e))
            raise
        index.record_audit(day.isoformat(), "manual", done.counts)
        if not dry_run:
            report_audit_findings(config, {day.isoformat(): None if done.complete else done.line()})
        report.audits.append(done)
        if on_day:
            on_day(done)
        return done.result

    try:
        outcome = run_range(days, audit_one, lambda day, result: "")
    finally:
        refresh_manifests(config, index)
    report.failed, report.total = outcome.failed, outcome.total
    return report


def _self_audit(
    config: Config,
    client: GraphClient | None,
    index: ArchiveIndex,
    now_local: datetime,
    floor: datetime,
    audit: Callable[[date], DayAudit] | None = None,
) -> None:
    """The daily self-audit inside fund_mail_once: never fails the incremental run.
    audit: how one day is audited (the IMAP source passes its own); Graph's by default."""

    def graph_audit(day: date) -> DayAudit:
        assert client is not None, "the Graph self-audit needs the run's client"
        return audit_day(config, client, index, day, command="once", not_before=floor)

    audit_one = audit or graph_audit
    days = self_audit_days(now_local, config.audit_at, config.audit_days, floor)
    if not days:
        return
    midnight = now_local.replace(hour=0, minute=0, second=0, microsecond=0)
    done = index.audited_complete_since(graph_time(midnight), [d.isoformat() for d in days])
    at = graph_time(now_local)
    findings: dict[str, str | None] = {}
    for day in [d for d in days if d.isoformat() not in done]:
        try:
            audited = audit_one(day)
        except Exception as e:  # noqa: BLE001 - the audit is retried by the next run
            log.warning("Self-audit of %s failed (retried on the next run): %s", day, e)
            error = REDACTOR.redact(str(e)) or type(e).__name__
            index.record_audit(day.isoformat(), "self", AuditCounts(), error, at=at)
            continue
        index.record_audit(day.isoformat(), "self", audited.counts, at=at)
        log.info("Self-audit %s", audited.line())
        findings[day.isoformat()] = None if audited.complete else audited.line()
    report_audit_findings(config, findings)


def report_audit_findings(config: Config, findings: dict[str, str | None]) -> None:
    """Hand the audit's unrepaired gaps (and the days found complete) to the alerts."""
    if not findings:
        return
    from fund_mail.alerts import report_audit

    try:
        report_audit(config.data_dir, findings)
    except Exception as e:  # noqa: BLE001 - the alert state must never fail a run
        log.error("Could not record the audit's findings for the alerts: %s", e)


# -- manifests and retention ----------------------------------------------------------------
def refresh_manifests(config: Config, index: ArchiveIndex) -> None:
    """Hash what was published and update the day manifests. The archive itself is already
    safe, so a failure here is logged and the next run catches up."""
    try:
        update_manifests(config.data_dir, index)
    except Exception as e:  # noqa: BLE001 - the published DB and cursor stand either way
        log.error("Could not update the manifest (the next run tries again): %s", e)


def retain(config: Config, today: date | None = None) -> RetentionReport | None:
    """Remove day folders past RETAIN_DAYS that the server holds; None when not due or busy.

    It holds both archive commands' locks, so it never removes a folder a run is writing to.
    """
    if config.retain_days is None or not config.data_dir.is_dir():
        return None
    try:
        with (
            RunLock(command_lock(config.data_dir, "fund_mail_once"), "fund_mail_once"),
            RunLock(command_lock(config.data_dir, "fund_mail_one_day"), "fund_mail_one_day"),
        ):
            index = ArchiveIndex(config.data_dir)
            read_back = None
            if config.upload_enabled:
                from fund_mail.delivery import ReadBack

                read_back = ReadBack(config)
            try:
                update_manifests(config.data_dir, index)
                return apply_retention(
                    config.data_dir,
                    index,
                    config.retain_days,
                    today or datetime.now(config.tz).date(),
                    read_back,
                )
            finally:
                if read_back is not None:
                    read_back.close()
                index.close()
    except LockedError:
        log.info("Another run is busy; local retention waits for the next run")
    except OSError as e:
        # Only local copies of delivered files are at stake; a marker finishes it next time.
        log.error("Local retention stopped (the next run goes on): %s", e)
    return None


# -- delivery and history --------------------------------------------------------------------
def deliver(config: Config) -> DeliveryReport | None:
    """Deliver everything queued in the outbox (oldest first); None when nothing is queued.

    paramiko is imported only when there is something to send, which keeps an idle cycle's
    start-up short.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    index = ArchiveIndex(config.data_dir)
    try:
        if not index.queued():
            from fund_mail.delivery import manifests_to_deliver

            if not manifests_to_deliver(index):
                return None
        from fund_mail.delivery import deliver_queue

        return deliver_queue(config, index)
    finally:
        index.close()


def record_run(
    config: Config,
    command: str,
    started_at: str,
    exit_code: int,
    error: str,
    result: RunResult | None,
) -> None:
    """Keep the run in the history that --status shows. Never fails the run itself."""
    if not config.data_dir.is_dir():
        return
    try:
        index = ArchiveIndex(config.data_dir)
        try:
            result = result or RunResult()
            db_file = index.relative(result.db_path) if result.db_path else ""
            index.record_run(
                command,
                started_at,
                exit_code,
                REDACTOR.redact(error),
                result.messages,
                result.attachments,
                result.bytes,
                db_file,
            )
        finally:
            index.close()
    except Exception as e:  # noqa: BLE001 - history is a convenience, the archive is not at stake
        log.warning("Could not record the run in the history: %s", e)
