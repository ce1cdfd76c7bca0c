"""The shared core: Archiver turns pages of Graph messages into published archive DBs through
one download pipeline per process, for every command that archives Graph mail. Full DBs are
published on a thread of their own (engine/publisher.py) while the next one fills."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import NamedTuple

from fund_mail import crashpoints
from fund_mail.archive.index import ArchiveIndex, Published
from fund_mail.archive.quarantine import quarantine
from fund_mail.archive.rows import message_row, received_text, unstorable_reason
from fund_mail.archive.store import ArchiveDb
from fund_mail.config import Config
from fund_mail.engine.plan import stage_sizes
from fund_mail.engine.publisher import Publisher
from fund_mail.engine.results import RunResult
from fund_mail.graph import attachments
from fund_mail.graph.client import GraphClient
from fund_mail.graph.folders import FolderPaths

log = logging.getLogger(__name__)

PIPELINE_DEPTH = 10  # chunks (a page) whose downloads are queued while an older one is written


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
        self._publisher: Publisher[_PublishJob, Published | None] | None = None
        self._in_flight: _InFlight | None = None  # at most one DB is being published

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
        self._publisher = publisher = Publisher(self.config.data_dir, self._publish)
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
            # no unfinished DB (an ended day has none left to discard). A publish under way
            # finishes first: the publisher waits for it.
            for item in [*staged, *states]:
                item.abandon()
            publisher.close()
            self._in_flight = None

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
                # The DB before this one was handed over a whole DB's rows ago, so this rarely
                # waits; one publish at a time keeps DBs published in the order they filled,
                # and a failure booked to its day before anything after it is published.
                self._collect()
                if state.pending is not None:  # None: the publish before it failed the day
                    self._hand_over(state, dedupe, chunk=True)
        except Exception as e:  # noqa: BLE001 - reported with the day
            state.fail(e)

    def _end_day(self, state: _DayState, dedupe: bool) -> RunResult | Exception:
        self._collect()
        if state.error is None and state.pending is not None:
            self._hand_over(state, dedupe, chunk=False)
            self._collect()
        return state.error if state.error is not None else state.result

    def _hand_over(self, state: _DayState, dedupe: bool, chunk: bool) -> None:
        """Start publishing the day's full DB; the next rows go to a new one."""
        pending, state.pending = state.pending, None
        assert pending is not None and self._publisher is not None and self._in_flight is None
        self._in_flight = _InFlight(
            state, pending, self._publisher.start(_PublishJob(pending, dedupe)), chunk
        )

    def _collect(self) -> None:
        """Wait for the publish in flight, if any, and book its outcome to its day."""
        if self._in_flight is None:
            return
        state, pending, future, chunk = self._in_flight
        self._in_flight = None
        try:
            published = future.result()
        except Exception as e:  # noqa: BLE001 - reported with the day
            pending.db.discard()
            state.fail(e)
            return
        if published is not None:  # None: another command archived all of them first
            result = state.result
            result.messages += pending.db.messages - published.dropped_messages
            result.attachments += pending.db.attachments - published.dropped_attachments
            result.db_paths.append(published.path)
        if chunk:
            crashpoints.reached("chunk-published")

    def _add_rows(
        self, batch: list[dict], plans: list, pending: _PendingDb, result: RunResult
    ) -> None:
        save_folder = pending.save_folder
        sent_items_id = self.folders.sent_items_id
        mailbox, tz = self.config.email_id, self.config.tz  # tz: a ZoneInfo lookup, once
        rows = []
        for message, plan in zip(batch, plans, strict=True):
            try:
                row = message_row(
                    message,
                    folder_path=self.folders.path(message.get("parentFolderId")),
                    mailbox=mailbox,
                    sent_folder_id=sent_items_id,
                    tz=tz,
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

    def _publish(self, index: ArchiveIndex, job: _PublishJob) -> Published | None:
        """Commit a full DB and publish it (on the publisher's thread, with its index)."""
        pending = job.pending
        pending.db.finish()
        crashpoints.reached("db-written")
        published = index.publish(
            pending.db.path,
            pending.day_dir,
            pending.stem,
            self.command,
            pending.ids,
            source=self.source,
            exclusive=job.exclusive,
        )
        if published is not None:
            # The manifest then only hashes the DB itself; a crash before this line leaves the
            # files to update_manifests, which hashes what has no hash yet.
            index.record_hashes(pending.hashes)
        return published


class DayWork(NamedTuple):
    """One day (or one run's window) to archive: where its DBs go and the pages listing it."""

    day: date | None
    day_folder: str
    stem: str
    pages: Iterable[list[dict]]


@dataclass
class _DayState:
    """One day in the pipeline: its result so far, the DB being filled, its first error."""

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


class _Staged(NamedTuple):
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


class _PublishJob(NamedTuple):
    pending: _PendingDb
    exclusive: bool


class _InFlight(NamedTuple):
    """The DB being published, and the day it belongs to."""

    state: _DayState
    pending: _PendingDb
    future: Future[Published | None]
    chunk: bool  # a DB of PUBLISH_EVERY messages, not the day's last


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
