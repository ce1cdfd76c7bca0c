"""Publishing full DBs on a thread of their own while the writer fills the next one.

A publish (commit and fsync the DB, record its ids in the index, rename it into place) is
SQLite and file-system work that runs without the interpreter lock, so on a thread of its own
it runs on another core while the writer builds the next DB's rows. The publish itself is the
same code either way; this only decides where it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Generic, TypeVar

from fund_mail.archive.index import ArchiveIndex

Job = TypeVar("Job")
Outcome = TypeVar("Outcome")


class Publisher(Generic[Job, Outcome]):
    """One thread that runs publish(index, job) for each job handed to it, in order, with an
    index connection of its own: a SQLite connection belongs to the thread that opened it."""

    def __init__(self, data_dir: Path, publish: Callable[[ArchiveIndex, Job], Outcome]) -> None:
        self._data_dir = data_dir
        self._publish = publish
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="publish")
        self._index: ArchiveIndex | None = None  # opened on the thread, by its first job
        self._started = False  # a run that publishes nothing starts no thread

    def start(self, job: Job) -> Future[Outcome]:
        self._started = True
        return self._thread.submit(self._run, job)

    def _run(self, job: Job) -> Outcome:
        if self._index is None:
            self._index = ArchiveIndex(self._data_dir)
        return self._publish(self._index, job)

    def _close_index(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    def close(self) -> None:
        """Wait for the jobs handed over (a stop never cuts a publish short), then close the
        index connection on the thread that opened it."""
        if not self._started:
            return
        try:
            self._thread.submit(self._close_index).result()
        finally:
            self._thread.shutdown(wait=True)
