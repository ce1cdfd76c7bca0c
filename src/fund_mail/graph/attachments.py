"""Attachment files: which ones a message has, and downloading them side by side.

A message's attachment metadata arrives with the list page ($expand), so the only per-message
requests a run makes are the byte downloads, at most MAX_CONCURRENCY at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import requests

from fund_mail.archive.fsutil import file_sha256
from fund_mail.archive.rows import (
    REFERENCE_ATTACHMENT,
    SOURCE_MESSAGE_ID,
    SOURCE_MESSAGE_NAME,
    AttachRow,
    attachment_note,
    phy_file_name,
    source_message_file_name,
)
from fund_mail.errors import RunFailed
from fund_mail.graph.client import GraphClient, NotDownloadable

log = logging.getLogger(__name__)


@dataclass
class AttachmentJob:
    """One file to download (an attachment, or the message's MIME with KEEP_MIME=1)."""

    message_id: str
    attachment: dict
    phy_file_name: str
    size: int = 0
    note: str = ""  # set when there is no file to keep (a link-only attachment)
    digest: tuple[int, str] | None = None  # (mtime_ns, SHA-256) of the file once committed


@dataclass
class MessageAttachments:
    """A message's attachment plan: the files to download, and notes on those without one."""

    jobs: list[AttachmentJob] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # Both run for every message, and most have no attachment: without one they return at
    # once, not through a comprehension's frame (all_notes then hands back its own list,
    # which its one caller, message_row, only reads).
    def rows(self, save_folder: str) -> list[AttachRow]:
        if not self.jobs:
            return []
        return [
            AttachRow(
                save_folder=save_folder,
                org_file_name=job.attachment.get("name") or "",
                phy_file_name=job.phy_file_name,
                file_size=job.size,
            )
            for job in self.jobs
            if not job.note
        ]

    def all_notes(self) -> list[str]:
        if not self.jobs:
            return self.notes
        return self.notes + [job.note for job in self.jobs if job.note]


def plan(message: dict, keep_mime: bool = False) -> MessageAttachments:
    planned = MessageAttachments()
    if keep_mime:
        source = {"id": SOURCE_MESSAGE_ID, "name": SOURCE_MESSAGE_NAME}
        planned.jobs.append(
            AttachmentJob(message["id"], source, source_message_file_name(message["id"]))
        )
    for attachment in message.get("attachments") or []:
        kind = attachment.get("@odata.type", "")
        if kind == REFERENCE_ATTACHMENT:
            planned.notes.append(attachment_note(attachment))
            continue
        name = phy_file_name(message["id"], attachment["id"], attachment.get("name") or "", kind)
        planned.jobs.append(AttachmentJob(message["id"], attachment, name))
    return planned


def start(client: GraphClient, jobs: list[AttachmentJob], attach_dir: Path) -> list[Future]:
    """Queue every job on the client's download workers; finish() waits for them.

    A worker streams the bytes, then leaves the fsync and rename to the client's finisher
    thread and takes its next job: each job's future holds the future of its commit.
    """
    if not jobs:
        return []
    attach_dir.mkdir(parents=True, exist_ok=True)
    finisher = client.finisher()

    def fetch(job: AttachmentJob) -> Future:
        dest = attach_dir / job.phy_file_name
        try:
            if job.attachment["id"] == SOURCE_MESSAGE_ID:
                job.size, commit = client.fetch_message_mime(job.message_id, dest)
            else:
                job.size, commit = client.fetch_attachment(
                    job.message_id, job.attachment["id"], dest
                )
        except NotDownloadable:
            job.note = attachment_note(job.attachment)
            commit = _nothing
        except requests.RequestException:
            raise
        except OSError as e:
            raise _not_saved(job, dest, e) from e
        return finisher.submit(_commit, commit, job, dest)

    pool = client.pool()
    return [pool.submit(fetch, job) for job in jobs]


def _nothing() -> None:
    return None


def _commit(commit: Callable[[], None], job: AttachmentJob, dest: Path) -> None:
    """fsync and rename on the finisher thread; a refused rename fails the run as a clear
    RunFailed, as a refused write does."""
    try:
        commit()
        if not job.note:
            # Hashed here, while other downloads are still on their way, from the page cache:
            # the manifest then has nothing left to read back after the last answer.
            job.digest = (dest.stat().st_mtime_ns, file_sha256(dest))
    except OSError as e:
        raise _not_saved(job, dest, e) from e


def _not_saved(job: AttachmentJob, dest: Path, e: OSError) -> RunFailed:
    # Typically Windows refusing the rename while another process holds dest open
    # (fsutil.replace_into_place has already retried). Nothing of this run is recorded.
    return RunFailed(
        f"The attachment {job.attachment.get('name') or '(no name)'!r} could not be "
        f"saved as {dest} ({type(e).__name__}: {e.strerror or e}). Another program (a "
        "virus scanner, or fund_mail_one_day writing the same file) may hold it open; "
        "this run archived nothing and the next run tries again."
    )


def file_hashes(jobs: list[AttachmentJob], save_folder: str) -> list[tuple[str, int, int, str]]:
    """(path under DATA_DIR, size, mtime_ns, SHA-256) of each file the jobs committed."""
    return [
        (f"{save_folder}/{job.phy_file_name}", job.size, *job.digest)
        for job in jobs
        if job.digest is not None
    ]


def finish(jobs: list[AttachmentJob], downloads: list[Future]) -> int:
    """The bytes written, once every file is durable under its name; the first failure
    propagates (the downloads still queued are cancelled)."""
    try:
        for download in downloads:
            download.result().result()
    except BaseException:
        for download in downloads:
            download.cancel()
        raise
    return sum(job.size for job in jobs)
