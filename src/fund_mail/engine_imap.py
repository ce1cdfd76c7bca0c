"""The engine for SOURCE=imap: fund_mail_once, fund_mail_one_day and the audit over IMAP.

The archive side is shared with Graph: the same rows (archive/rows.message_row), the same DB
writer, the same publish transaction, outbox and locks. What differs is how new mail is found:
per folder, by UIDVALIDITY and the highest UID read (kept in the archive index), instead of a
time cursor. See ARCHITECTURE.md, "The IMAP source".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from fund_mail import crashpoints
from fund_mail.archive.fsutil import write_atomic
from fund_mail.archive.index import ArchiveIndex, AuditCounts
from fund_mail.archive.rows import (
    SOURCE_MESSAGE_NAME,
    AttachRow,
    graph_time,
    message_row,
    parse_graph_time,
    source_message_file_name,
)
from fund_mail.archive.store import ArchiveDb
from fund_mail.config import Config
from fund_mail.engine import (
    AuditReport,
    DayAudit,
    RunResult,
    audit_range,
    day_bounds,
    exclusive_index,
    refresh_manifests,
    self_audit,
)
from fund_mail.imap import mime
from fund_mail.imap.client import Folder, FolderStatus, ImapMailbox, Summary

log = logging.getLogger(__name__)

BODY_BATCH_BYTES = 32 * 1024 * 1024  # message bytes held in memory per FETCH of full bodies
SEARCH_MARGIN = timedelta(days=1)  # SEARCH SINCE/BEFORE use the server's day, not ours


def imap_email_id(folder: str, uidvalidity: int, uid: int) -> str:
    """RFC 3501: (mailbox, UIDVALIDITY, UID) names one message and is never reused."""
    return f"imap:{uidvalidity}:{uid}:{folder}"


@dataclass(frozen=True)
class FolderPlan:
    """What to read from one folder. mode: incremental | new | resync | range."""

    mode: str
    after_uid: int = 0


def plan_folder(
    status: FolderStatus, known: tuple[int, int] | None, rescan: bool = False
) -> FolderPlan:
    """Pure: how to read a folder given what the index remembers of it."""
    if rescan:
        return FolderPlan("range")
    if known is None:
        return FolderPlan("new")
    uidvalidity, last_uid = known
    if uidvalidity != status.uidvalidity:
        return FolderPlan("resync")
    return FolderPlan("incremental", after_uid=last_uid)


def body_batches(summaries: list[Summary], max_bytes: int = BODY_BATCH_BYTES) -> Iterator[list]:
    """Group messages for one FETCH each, so memory stays bounded whatever the mail size."""
    batch: list[Summary] = []
    size = 0
    for summary in summaries:
        if batch and size + summary.size > max_bytes:
            yield batch
            batch, size = [], 0
        batch.append(summary)
        size += summary.size
    if batch:
        yield batch


def summary_fingerprint(summary: Summary) -> str:
    headers = mime.parse(summary.headers)
    moment = mime.header_date(headers) or summary.internal_date
    return mime.fingerprint(mime.message_id(headers), moment, summary.size)


@dataclass
class ImapWriter:
    """Fetched messages into a temporary DB and their attachment files, published at the end
    (and every PUBLISH_EVERY messages) through the same index transaction as Graph's."""

    config: Config
    index: ArchiveIndex
    command: str
    day_folder: str
    stem: str
    dedupe: bool
    source: str | None = None  # what the index records as having archived the ids
    result: RunResult = field(default_factory=RunResult)

    def __post_init__(self) -> None:
        self.day_dir = self.config.data_dir / self.day_folder
        self.db: ArchiveDb | None = None
        self.archived: list[tuple[str, str]] = []
        self.fingerprints: list[tuple[str, str]] = []
        self._seen_prints: set[str] = set()
        self.vanished: list[int] = []  # UIDs deleted between their summary and their body

    def _wanted(self, folder: Folder, status: FolderStatus, summaries: list[Summary]) -> list:
        """(summary, email_id, fingerprint) of the messages not archived yet."""
        wanted = [
            (s, imap_email_id(folder.name, status.uidvalidity, s.uid), summary_fingerprint(s))
            for s in summaries
        ]
        if not self.dedupe:
            return wanted
        known_ids = self.index.known_ids(i for _, i, _ in wanted)
        known_prints = self.index.known_fingerprints(p for _, _, p in wanted)
        fresh = []
        for s, i, p in wanted:
            if i in known_ids or p in known_prints or p in self._seen_prints:
                continue
            self._seen_prints.add(p)
            fresh.append((s, i, p))
        return fresh

    def add(
        self, mailbox: ImapMailbox, folder: Folder, status: FolderStatus, summaries: list[Summary]
    ) -> None:
        wanted = self._wanted(folder, status, summaries)
        by_uid = {s.uid: (s, i, p) for s, i, p in wanted}
        for batch in body_batches([s for s, _, _ in wanted]):
            fetched = dict(mailbox.bodies([s.uid for s in batch]))
            for summary in batch:
                raw = fetched.get(summary.uid)
                if raw is None:
                    log.info("%s UID %s was deleted while it was read", folder.path, summary.uid)
                    self.vanished.append(summary.uid)
                    continue
                _, email_id, fingerprint = by_uid[summary.uid]
                self._write(folder, summary, email_id, raw)
                self.fingerprints.append((fingerprint, email_id))
                if self.db is not None and self.db.messages >= self.config.publish_every:
                    # A long catch-up keeps its progress if it is killed, as on Graph.
                    self.publish()
                    crashpoints.reached("chunk-published")

    def _write(self, folder: Folder, summary: Summary, email_id: str, raw: bytes) -> None:
        parsed = mime.graph_shape(
            raw,
            email_id=email_id,
            folder=folder.name,
            received=summary.internal_date,
            body_type=self.config.body_content_type,
        )
        files = [(a.phy_file_name(email_id), a.name, a.content) for a in parsed.attachments]
        if self.config.keep_mime:
            files.append((source_message_file_name(email_id), SOURCE_MESSAGE_NAME, raw))
        attach_rows: list[AttachRow] = []
        (self.day_dir / "attach").mkdir(parents=True, exist_ok=True)
        for phy_name, org_name, content in files:
            write_atomic(self.day_dir / "attach" / phy_name, content)
            self.result.bytes += len(content)
            attach_rows.append(
                AttachRow(f"{self.day_folder}/attach", org_name, phy_name, len(content))
            )
        crashpoints.reached("attachments-downloaded")
        row = message_row(
            parsed.message,
            folder_path=folder.path,
            mailbox=self.config.email_id,
            sent_folder_id=folder.name if folder.is_sent else None,
            tz=self.config.tz,
            notes=parsed.notes,
        )
        if self.db is None:
            tmp_name = f".{self.command}-{self.stem}.{time.time_ns()}.tmp"
            self.db = ArchiveDb(self.day_dir / tmp_name)
        self.db.add(row, attach_rows)
        crashpoints.reached("db-partial")
        self.archived.append((email_id, graph_time(summary.internal_date)))

    def publish(self) -> RunResult:
        """Publish the DB being filled, if any; the next message starts a new one."""
        db, self.db = self.db, None
        if db is None:
            return self.result
        db.finish()
        crashpoints.reached("db-written")
        published = self.index.publish(
            db.path,
            self.day_dir,
            self.stem,
            self.command,
            self.archived,
            source=self.source,
            exclusive=self.dedupe,
            fingerprints=self.fingerprints,
        )
        self.archived, self.fingerprints = [], []
        if published is not None:
            self.result.messages += db.messages - published.dropped_messages
            self.result.attachments += db.attachments - published.dropped_attachments
            self.result.db_paths.append(published.path)
        return self.result

    def discard(self) -> None:
        if self.db is not None:
            self.db.discard()


@contextmanager
def connected(config: Config, mailbox: ImapMailbox | None) -> Iterator[ImapMailbox]:
    mailbox = mailbox or ImapMailbox(config)
    with mailbox:
        yield mailbox


@contextmanager
def writing(writer: ImapWriter) -> Iterator[ImapWriter]:
    try:
        yield writer
    except BaseException:
        writer.discard()
        raise


def _baseline(mailbox: ImapMailbox, index: ArchiveIndex) -> RunResult:
    """First run: remember each folder's newest UID and the time; archive nothing."""
    states = {}
    for folder in mailbox.folders():
        status = mailbox.select(folder.name)
        states[folder.name] = (status.uidvalidity, max(status.uidnext - 1, 0))
    index.record_imap_baseline(graph_time(datetime.now(UTC)), states)
    log.info("Baseline recorded for %d IMAP folders; mail after it will be archived", len(states))
    return RunResult(baseline=True)


def run_once(
    config: Config, since: datetime | None = None, mailbox: ImapMailbox | None = None
) -> RunResult:
    """One incremental run over every folder: archive what is new, exactly once."""
    started = time.monotonic()
    run_time = datetime.now(config.tz)
    with exclusive_index(config, "once", "fund_mail_once") as index:
        with connected(config, mailbox) as imap:
            floor_text = index.imap_floor()
            if floor_text is None and since is None:
                result = _baseline(imap, index)
                result.seconds = time.monotonic() - started
                return result
            floor = since or parse_graph_time(floor_text or "")
            states = index.imap_folder_states()
            new_states: dict[str, tuple[int, int]] = {}
            writer = ImapWriter(
                config,
                index,
                "once",
                run_time.strftime("%Y_%m_%d"),
                run_time.strftime("fm_%Y_%m_%d_%H%M"),
                dedupe=True,
            )
            with writing(writer):
                for folder in imap.folders():
                    status = imap.select(folder.name)
                    known = states.get(folder.name)
                    plan = plan_folder(status, known, rescan=since is not None)
                    if plan.mode == "resync" and known is not None:
                        log.warning(
                            "%s: UIDVALIDITY changed (%s -> %s); reading it again, skipping "
                            "what is archived already",
                            folder.path,
                            known[0],
                            status.uidvalidity,
                        )
                    if plan.mode == "incremental":
                        uids = imap.uids_after(plan.after_uid)
                    else:
                        uids = imap.uids_between(floor.date() - SEARCH_MARGIN)
                    summaries = [
                        s
                        for s in imap.summaries(uids)
                        if not s.is_draft and s.internal_date >= floor
                    ]
                    writer.add(imap, folder, status, summaries)
                    top = [plan.after_uid, status.uidnext - 1, *uids]
                    new_states[folder.name] = (status.uidvalidity, max(top))
                result = writer.publish()
            crashpoints.reached("db-published")
            # The DB is durable and recorded; only now may the folder states move.
            index.set_imap_folder_states(new_states)
            if floor_text is None:
                index.record_imap_baseline(graph_time(floor), {})
            self_audit(
                config,
                None,
                index,
                run_time,
                floor,
                audit=lambda day: audit_day(
                    config, imap, index, day, command="once", not_before=floor
                ),
            )
            refresh_manifests(config, index)
    result.seconds = time.monotonic() - started
    return result


def day_summaries(
    mailbox: ImapMailbox, start: datetime, end: datetime
) -> Iterator[tuple[Folder, FolderStatus, list[Summary], int]]:
    """Each folder's messages received in [start, end), drafts left out, and how many UIDs the
    day's SEARCH matched (SEARCH works on the server's dates, so it reaches a day further)."""
    for folder in mailbox.folders():
        status = mailbox.select(folder.name)
        uids = mailbox.uids_between(start.date() - SEARCH_MARGIN, end.date() + SEARCH_MARGIN)
        summaries = [
            s for s in mailbox.summaries(uids) if not s.is_draft and start <= s.internal_date < end
        ]
        yield folder, status, summaries, len(uids)


def run_day(
    config: Config,
    day: date,
    mailbox: ImapMailbox | None = None,
    on_page: Callable[[int], None] | None = None,
) -> RunResult:
    """Every message of one local day, every folder, into its own DB (no de-duplication)."""
    started = time.monotonic()
    run_time = datetime.now(config.tz)
    start, end = day_bounds(day, config)
    with exclusive_index(config, "day", "fund_mail_one_day") as index:
        with connected(config, mailbox) as imap:
            writer = ImapWriter(
                config, index, "day", day.strftime("%Y_%m_%d"), _day_stem(day, run_time), False
            )
            with writing(writer):
                for folder, status, summaries, matched in day_summaries(imap, start, end):
                    if on_page:
                        on_page(matched)
                    writer.add(imap, folder, status, summaries)
                result = writer.publish()
            refresh_manifests(config, index)
    result.seconds = time.monotonic() - started
    return result


def _day_stem(day: date, run_time: datetime) -> str:
    return f"fm_{day.strftime('%Y_%m_%d')}_{run_time.strftime('%H%M')}"


# -- the completeness audit ------------------------------------------------------------------
def audit_day(
    config: Config,
    mailbox: ImapMailbox,
    index: ArchiveIndex,
    day: date,
    *,
    command: str,
    dry_run: bool = False,
    not_before: datetime | None = None,
    on_page: Callable[[int], None] | None = None,
) -> DayAudit:
    """Compare a day in every folder with everything ever archived; archive what is missing.

    A message counts as archived when its id or its fingerprint is in the index, the same rule
    fund_mail_once follows, so a message moved since it was archived is not a gap.
    """
    start, end = day_bounds(day, config)
    if not_before is not None:
        start = max(start, not_before)
    listed = []
    if start < end:
        for folder, status, summaries, matched in day_summaries(mailbox, start, end):
            if on_page:
                on_page(matched)
            listed.append((folder, status, summaries))

    def archived_count() -> tuple[int, int]:
        ids = [imap_email_id(f.name, st.uidvalidity, s.uid) for f, st, ss in listed for s in ss]
        prints = [summary_fingerprint(s) for _, _, ss in listed for s in ss]
        known_ids, known_prints = index.known_ids(ids), index.known_fingerprints(prints)
        found = sum(i in known_ids or p in known_prints for i, p in zip(ids, prints, strict=True))
        return len(ids), found

    in_mailbox, known = archived_count()
    counts = AuditCounts(in_mailbox, known, in_mailbox - known, 0, dry_run)
    if dry_run or known == in_mailbox:
        return DayAudit(day, counts)
    writer = ImapWriter(
        config,
        index,
        command,
        day.strftime("%Y_%m_%d"),
        _day_stem(day, datetime.now(config.tz)),
        dedupe=True,
        source="audit",
    )
    with writing(writer):
        for folder, status, summaries in listed:
            if not summaries:
                continue
            # The listing walked every folder; the bodies are read from this one again.
            if mailbox.select(folder.name).uidvalidity != status.uidvalidity:
                log.warning("%s changed its UIDVALIDITY during the audit; audit it again", folder)
                continue
            writer.add(mailbox, folder, status, summaries)
        result = writer.publish()
    # Deleted since they were listed: nothing left to archive, so no longer in the mailbox.
    vanished = len(writer.vanished)
    _, now_known = archived_count()
    counts = AuditCounts(
        in_mailbox - vanished, known, in_mailbox - known - vanished, now_known - known, dry_run
    )
    return DayAudit(day, counts, result)


def run_audit(
    config: Config,
    days: list[date],
    *,
    dry_run: bool = False,
    on_start: Callable[[date], None] | None = None,
    on_day: Callable[[DayAudit], None] | None = None,
    on_page: Callable[[int], None] | None = None,
    mailbox: ImapMailbox | None = None,
) -> AuditReport:
    """fund_mail_one_day --audit over IMAP: each day in turn, under fund_mail_one_day's lock."""
    with exclusive_index(config, "day", "fund_mail_one_day") as index:
        with connected(config, mailbox) as imap:
            return audit_range(
                config,
                index,
                days,
                lambda day: audit_day(
                    config, imap, index, day, command="day", dry_run=dry_run, on_page=on_page
                ),
                dry_run=dry_run,
                on_start=on_start,
                on_day=on_day,
            )
