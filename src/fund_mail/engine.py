"""The sync engine: one shared core behind fund_mail_once and fund_mail_one_day.

Archiver turns pages of Graph messages into one published archive DB with its attachments.
run_once adds the incremental cursor; run_day a fixed local day. Both deliver through the outbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from fund_mail import crashpoints
from fund_mail.archive.cursor import Cursor, read_cursor, set_aside, write_cursor
from fund_mail.archive.fsutil import RunLock
from fund_mail.archive.index import ArchiveIndex
from fund_mail.archive.manifest import update_manifests
from fund_mail.archive.retention import RetentionReport, apply_retention
from fund_mail.archive.rows import graph_time, message_row, parse_graph_time
from fund_mail.archive.store import ArchiveDb
from fund_mail.config import Config
from fund_mail.errors import LockedError, StateError
from fund_mail.graph import attachments
from fund_mail.graph.auth import TokenProvider
from fund_mail.graph.client import GraphClient, read_ahead
from fund_mail.graph.folders import FolderPaths
from fund_mail.logs import REDACTOR

if TYPE_CHECKING:
    from fund_mail.delivery import DeliveryReport

log = logging.getLogger(__name__)

BASELINE_PAGE = 50
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class RunResult:
    messages: int = 0
    attachments: int = 0
    bytes: int = 0
    seconds: float = 0.0
    db_path: Path | None = None
    baseline: bool = False
    requests: int = 0

    def summary(self, command: str) -> str:
        where = str(self.db_path) if self.db_path else "no mail to archive, no DB written"
        if self.baseline:
            where = "baseline recorded, nothing archived"
        return (
            f"{command}: {self.messages} messages, {self.attachments} attachments, "
            f"{self.bytes} bytes, {self.seconds:.1f} s, {where}"
        )


def received(message: dict) -> datetime:
    return parse_graph_time(message["receivedDateTime"])


class Archiver:
    """Writes accepted messages, page by page, into one temporary DB, then publishes it."""

    def __init__(self, config: Config, client: GraphClient, index: ArchiveIndex, command: str):
        self.config = config
        self.client = client
        self.index = index
        self.command = command
        self.folders = FolderPaths(client, config.max_concurrency)

    def archive(
        self,
        pages: Iterable[list[dict]],
        *,
        accept: Callable[[dict], bool],
        day_folder: str,
        stem: str,
        dedupe: bool,
        on_page: Callable[[int], None] | None = None,
    ) -> RunResult:
        config = self.config
        day_dir = config.data_dir / day_folder
        save_folder = f"{day_folder}/attach"
        tmp_path = day_dir / f".{self.command}-{stem}.{time.time_ns()}.tmp"
        result = RunResult()
        db: ArchiveDb | None = None
        archived: list[tuple[str, str]] = []
        seen: set[str] = set()
        try:
            for page in pages:
                # Skip-based paging can repeat a message when new mail arrives mid-scan.
                batch = [m for m in page if m["id"] not in seen and not m.get("isDraft")]
                batch = [m for m in batch if accept(m)]
                seen.update(m["id"] for m in page)
                if dedupe and batch:
                    known = self.index.known_ids(m["id"] for m in batch)
                    batch = [m for m in batch if m["id"] not in known]
                if on_page:
                    on_page(len(page))
                if not batch:
                    continue
                if db is None:
                    db = ArchiveDb(tmp_path)
                self.folders.lookup(m.get("parentFolderId") for m in batch)
                plans = [attachments.plan(m) for m in batch]
                jobs = [job for plan in plans for job in plan.jobs]
                result.bytes += attachments.download_all(
                    self.client, jobs, day_dir / "attach", config.max_concurrency
                )
                crashpoints.reached("attachments-downloaded")
                sent_items_id = self.folders.sent_items_id
                for message, plan in zip(batch, plans, strict=True):
                    row = message_row(
                        message,
                        folder_path=self.folders.path(message.get("parentFolderId")),
                        mailbox=config.email_id,
                        sent_folder_id=sent_items_id,
                        tz=config.tz,
                        notes=plan.all_notes(),
                    )
                    db.add(row, plan.rows(save_folder))
                    crashpoints.reached("db-partial")
                    archived.append((message["id"], graph_time(received(message))))
            if db is None:
                return result
            db.finish()
            crashpoints.reached("db-written")
            published = self.index.publish(
                tmp_path, day_dir, stem, self.command, archived if dedupe else None
            )
        except BaseException:
            if db is not None:
                db.discard()
            raise
        result.messages, result.attachments = db.messages, db.attachments
        result.db_path = published.path
        return result


@dataclass
class Newest:
    """The newest message a scan saw, archived or not: it becomes the cursor."""

    message: dict | None = None

    def track(self, pages: Iterable[list[dict]]) -> Iterator[list[dict]]:
        for page in pages:
            for message in page:
                if self.message is None or received(message) > received(self.message):
                    self.message = message
            yield page


@contextmanager
def exclusive_index(config: Config, command: str, lock_name: str) -> Iterator[ArchiveIndex]:
    """Hold the command's lock, open the index, and finish what a killed run left open."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(config.data_dir / f"{lock_name}.lock", lock_name):
        index = ArchiveIndex(config.data_dir)
        try:
            index.recover(command)
            yield index
        finally:
            index.close()


def open_graph(config: Config) -> GraphClient:
    return GraphClient(config, TokenProvider(config), backoff=config.retry_backoff)


def _load_cursor(config: Config, since: datetime | None) -> Cursor | None:
    try:
        return read_cursor(config.data_dir)
    except StateError:
        if since is None:
            raise
        kept = set_aside(config.data_dir / "LAST_TIME.json")
        log.warning("LAST_TIME.json was unreadable; kept as %s and restarting from --since", kept)
        return None


def establish_baseline(client: GraphClient, index: ArchiveIndex, config: Config) -> Cursor:
    """First run: remember the newest message (and any in the same second) without archiving."""
    newest: dict | None = None
    same_second: list[tuple[str, str]] = []
    pages = client.fetch_message_pages(
        f"receivedDateTime ge {graph_time(EPOCH)} and isDraft eq false", BASELINE_PAGE
    )
    for page in pages:
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


def run_once(
    config: Config, since: datetime | None = None, client: GraphClient | None = None
) -> RunResult:
    """One incremental run: archive everything new since the cursor, exactly once."""
    started = time.monotonic()
    run_time = datetime.now(config.tz)
    with exclusive_index(config, "once", "fund_mail_once") as index:
        cursor = _load_cursor(config, since)
        client = client or open_graph(config)
        if cursor is None and since is None and index.has_archived():
            email_id, received_utc = index.newest_archived()
            log.warning("LAST_TIME.json is missing; resuming from the archive index")
            # The baseline's own time is the floor again, so the overlap window is kept.
            floor = index.baseline_time()
            cursor = Cursor(
                email_id,
                parse_graph_time(received_utc),
                archive_floor=parse_graph_time(floor) if floor else EPOCH,
            )
        if cursor is None and since is None:
            cursor = establish_baseline(client, index, config)
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
        if since is not None:
            floor = scan_from = since
            last_time = cursor.last_fetch_time if cursor else since
        else:
            if cursor.archive_floor is None and not index.has_archived():
                # A LAST_TIME.json from the previous tool: it archived up to its cursor.
                index.record_baseline([(cursor.last_email_id, graph_time(cursor.last_fetch_time))])
            floor = cursor.archive_floor or cursor.last_fetch_time
            last_time = cursor.last_fetch_time
            scan_from = max(floor, last_time - timedelta(minutes=config.overlap_minutes))
        newest = Newest()
        pages = read_ahead(
            client.fetch_message_pages(
                f"receivedDateTime ge {graph_time(scan_from)} and isDraft eq false",
                config.page_size,
            )
        )
        result = Archiver(config, client, index, "once").archive(
            newest.track(pages),
            accept=lambda m: received(m) >= floor,
            day_folder=run_time.strftime("%Y_%m_%d"),
            stem=run_time.strftime("fm_%Y_%m_%d_%H%M"),
            dedupe=True,
        )
        crashpoints.reached("db-published")
        # The DB is durable and recorded; only now may the cursor move.
        if newest.message is not None and received(newest.message) >= last_time:
            cursor = Cursor(
                newest.message["id"],
                received(newest.message),
                newest.message.get("subject") or "",
                floor,
            )
        else:
            cursor = Cursor(
                cursor.last_email_id if cursor else "",
                last_time,
                cursor.title if cursor else "",
                floor,
            )
        write_cursor(config.data_dir, cursor, config.tz)
        refresh_manifests(config, index)
        result.seconds = time.monotonic() - started
        result.requests = client.requests_made
        return result


def day_bounds(day: date, config: Config) -> tuple[datetime, datetime]:
    """[00:00, 24:00) of a local day in TIMEZONE, as UTC instants (DST-safe)."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=config.tz)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=config.tz)
    return start.astimezone(UTC), end.astimezone(UTC)


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
    run_time = datetime.now(config.tz)
    with exclusive_index(config, "day", "fund_mail_one_day") as index:
        client = client or open_graph(config)
        start, end = day_bounds(day, config)
        pages = read_ahead(
            client.fetch_message_pages(
                f"receivedDateTime ge {graph_time(start)} and receivedDateTime lt "
                f"{graph_time(end)} and isDraft eq false",
                config.page_size,
            )
        )
        result = Archiver(config, client, index, "day").archive(
            pages,
            accept=lambda m: start <= received(m) < end,
            day_folder=day.strftime("%Y_%m_%d"),
            stem=f"fm_{day.strftime('%Y_%m_%d')}_{run_time.strftime('%H%M')}",
            dedupe=False,
            on_page=on_page,
        )
        refresh_manifests(config, index)
        result.seconds = time.monotonic() - started
        result.requests = client.requests_made
        return result


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
            RunLock(config.data_dir / "fund_mail_once.lock", "fund_mail_once"),
            RunLock(config.data_dir / "fund_mail_one_day.lock", "fund_mail_one_day"),
        ):
            index = ArchiveIndex(config.data_dir)
            try:
                update_manifests(config.data_dir, index)
                return apply_retention(
                    config.data_dir,
                    index,
                    config.retain_days,
                    today or datetime.now(config.tz).date(),
                )
            finally:
                index.close()
    except LockedError:
        log.info("Another run is busy; local retention waits for the next run")
    except OSError as e:
        # Only local copies of delivered files are at stake; a marker finishes it next time.
        log.error("Local retention stopped (the next run goes on): %s", e)
    return None


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
