"""Folder display paths ('Inbox/Funds') from a message's parentFolderId, cached for the run."""

from __future__ import annotations

import logging

from fund_mail.errors import GraphError
from fund_mail.graph import GraphClient

log = logging.getLogger(__name__)


class FolderPaths:
    """Walks parentFolderId up to the mailbox root, one request per folder not yet seen
    (Sent Items, which also names the root, comes with the first request)."""

    def __init__(self, client: GraphClient) -> None:
        self._client = client
        self._paths: dict[str, str] = {}
        self._root_id: str | None = None
        self._sent_id: str | None = None

    def _load_sent_items(self) -> None:
        # Sent Items sits right under the mailbox root, so one request names both.
        sent = self._client.fetch_folder("sentitems")
        self._sent_id, self._root_id = sent["id"], sent.get("parentFolderId")
        self._paths[sent["id"]] = sent.get("displayName") or ""

    @property
    def root_id(self) -> str | None:
        if self._sent_id is None:
            self._load_sent_items()
        return self._root_id

    @property
    def sent_items_id(self) -> str:
        if self._sent_id is None:
            self._load_sent_items()
        return self._sent_id

    def path(self, folder_id: str | None) -> str:
        if not folder_id:
            return ""
        if folder_id not in self._paths:
            self._paths[folder_id] = self._resolve(folder_id, depth=0)
        return self._paths[folder_id]

    def _resolve(self, folder_id: str, depth: int) -> str:
        if folder_id == self.root_id or depth > 64:
            return ""
        try:
            folder = self._client.fetch_folder(folder_id)
        except GraphError as e:
            if e.status != 404:
                raise
            log.warning("folder %s no longer exists; folder_path left empty", folder_id[-12:])
            return ""
        parent = folder.get("parentFolderId")
        parent_path = self.path(parent) if parent and parent != self.root_id else ""
        name = folder.get("displayName") or ""
        return f"{parent_path}/{name}" if parent_path else name
