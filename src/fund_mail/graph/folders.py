"""Folder display paths ('Inbox/Funds') from a message's parentFolderId, cached for the run."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from fund_mail.errors import GraphError
from fund_mail.graph.client import GraphClient

log = logging.getLogger(__name__)

MAX_DEPTH = 64  # deeper than any real folder tree; stops a parent loop


class FolderPaths:
    """One request per folder the run meets, made side by side before the rows need them.

    lookup() fetches every folder of a batch that the run has not seen yet, together, then their
    parents, level by level up to the mailbox root. Sent Items comes first: it sits right under
    the root, so its parentFolderId names the root too.
    """

    def __init__(self, client: GraphClient, workers: int) -> None:
        self._client = client
        self._workers = workers
        self._folders: dict[str, dict | None] = {}  # None: the folder no longer exists
        self._paths: dict[str, str] = {}
        self._root_id: str | None = None
        self._sent_id: str | None = None
        self._sent_ahead: Future[dict] | None = None
        self._inbox_ahead: Future[dict | None] | None = None

    @property
    def sent_items_id(self) -> str:
        if self._sent_id is None:
            self.lookup([])
        return self._sent_id or ""

    def ahead(self) -> None:
        """Ask for Sent Items and Inbox now, beside the first list page, for a run that will
        need them (a backfill). Sent Items decides every row's sent or received; Inbox holds
        most of a day's mail, so the first page's rows need not wait for a lookup of their
        folder. A day with no mail in Inbox pays that one request."""
        if self._sent_id is None and self._sent_ahead is None:
            worker = ThreadPoolExecutor(2, thread_name_prefix="folder")
            self._sent_ahead = worker.submit(self._client.fetch_folder, "sentitems")
            self._inbox_ahead = worker.submit(self._fetch, "inbox")
            worker.shutdown(wait=False)

    def lookup(self, folder_ids: Iterable[str | None]) -> None:
        if self._sent_id is None:
            # First on its own: a message in Sent Items then needs no request of its own.
            ahead, self._sent_ahead = self._sent_ahead, None
            sent = ahead.result() if ahead else self._client.fetch_folder("sentitems")
            self._take_sent_items(sent)
            inbox, self._inbox_ahead = self._inbox_ahead, None
            if inbox is not None and (folder := inbox.result()) is not None:
                self._folders[folder["id"]] = folder
        wanted = self._unseen(folder_ids)
        if not wanted:
            return
        with ThreadPoolExecutor(self._workers, thread_name_prefix="folder") as pool:
            for _ in range(MAX_DEPTH):
                fetched = dict(zip(wanted, pool.map(self._fetch, wanted), strict=True))
                self._folders.update(fetched)
                wanted = self._unseen(f.get("parentFolderId") for f in fetched.values() if f)
                if not wanted:
                    break

    def path(self, folder_id: str | None) -> str:
        if not folder_id:
            return ""
        if folder_id not in self._paths:
            self._paths[folder_id] = self._walk(folder_id)
        return self._paths[folder_id]

    def _walk(self, folder_id: str) -> str:
        if self._sent_id is None:
            self.lookup([])  # names the root, where the walk stops
        names: list[str] = []
        current: str | None = folder_id
        for _ in range(MAX_DEPTH):
            if not current or current == self._root_id:
                break
            if current not in self._folders:
                self.lookup([current])  # a folder no batch asked for in advance
            folder = self._folders.get(current)
            if folder is None:
                break  # gone: the path keeps the names below it
            names.append(folder.get("displayName") or "")
            current = folder.get("parentFolderId")
        return "/".join(reversed(names))

    def _unseen(self, folder_ids: Iterable[str | None]) -> list[str]:
        return sorted(
            {f for f in folder_ids if f and f not in self._folders and f != self._root_id}
        )

    def _fetch(self, folder_id: str) -> dict | None:
        try:
            return self._client.fetch_folder(folder_id)
        except GraphError as e:
            if e.status != 404:
                raise
            log.warning("folder %s no longer exists; folder_path left empty", folder_id[-12:])
            return None

    def _take_sent_items(self, sent: dict) -> None:
        self._sent_id, self._root_id = sent["id"], sent.get("parentFolderId")
        self._folders[sent["id"]] = sent
