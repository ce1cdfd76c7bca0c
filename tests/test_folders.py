"""Folder paths: one request per folder, the folders of a batch looked up side by side."""

import threading
import time

import pytest

from fund_mail.errors import GraphError
from fund_mail.graph.folders import MAX_DEPTH, FolderPaths

ROOT = "root"
TREE = {
    "sent": {"id": "sent", "displayName": "Sent Items", "parentFolderId": ROOT},
    "inbox": {"id": "inbox", "displayName": "Inbox", "parentFolderId": ROOT},
    "funds": {"id": "funds", "displayName": "Funds", "parentFolderId": "inbox"},
    "2025": {"id": "2025", "displayName": "2025", "parentFolderId": "funds"},
    "archive": {"id": "archive", "displayName": "Archive", "parentFolderId": ROOT},
    "orphan": {"id": "orphan", "displayName": "Kept", "parentFolderId": "deleted-parent"},
    "loop-a": {"id": "loop-a", "displayName": "A", "parentFolderId": "loop-b"},
    "loop-b": {"id": "loop-b", "displayName": "B", "parentFolderId": "loop-a"},
}


class FakeFolders:
    """Answers fetch_folder from TREE and remembers each request; 404 for unknown ids."""

    def __init__(self, barrier: threading.Barrier | None = None) -> None:
        self.requested: list[str] = []
        self.barrier = barrier
        self._lock = threading.Lock()

    def fetch_folder(self, folder_id: str) -> dict:
        with self._lock:
            self.requested.append(folder_id)
        if folder_id == "sentitems":
            return TREE["sent"]
        if self.barrier is not None:
            self.barrier.wait(timeout=10)  # raises BrokenBarrierError unless all arrive together
        if folder_id not in TREE:
            raise GraphError("Graph answered 404 ErrorItemNotFound", 404, "ErrorItemNotFound")
        return TREE[folder_id]


def test_nested_paths_with_one_request_per_folder():
    client = FakeFolders()
    folders = FolderPaths(client, workers=4)
    folders.lookup(["2025", "inbox", None])
    assert folders.path("2025") == "Inbox/Funds/2025"
    assert folders.path("funds") == "Inbox/Funds"
    assert folders.path("inbox") == "Inbox"
    assert folders.path(None) == ""
    assert sorted(client.requested) == ["2025", "funds", "inbox", "sentitems"]


def test_a_backfill_asks_for_sent_items_and_inbox_ahead_once():
    client = FakeFolders()
    folders = FolderPaths(client, workers=4)
    folders.ahead()
    for _ in range(500):  # both are asked for before any page needs them
        if len(client.requested) == 2:
            break
        time.sleep(0.01)
    assert sorted(client.requested) == ["inbox", "sentitems"]
    folders.lookup(["inbox", "2025"])  # the first page: Inbox is known already
    assert folders.path("2025") == "Inbox/Funds/2025"
    assert folders.path("inbox") == "Inbox"
    assert sorted(client.requested) == ["2025", "funds", "inbox", "sentitems"]


def test_the_folders_of_a_batch_are_fetched_side_by_side():
    # Both folders must be in flight at once to pass the barrier.
    client = FakeFolders(barrier=threading.Barrier(2))
    folders = FolderPaths(client, workers=4)
    folders.lookup(["inbox", "archive"])
    assert folders.path("inbox") == "Inbox"
    assert folders.path("archive") == "Archive"


def test_sent_items_needs_no_second_request():
    client = FakeFolders()
    folders = FolderPaths(client, workers=4)
    folders.lookup(["sent"])
    assert folders.sent_items_id == "sent"
    assert folders.path("sent") == "Sent Items"
    assert client.requested == ["sentitems"]


def test_a_folder_no_batch_asked_for_is_still_found():
    client = FakeFolders()
    folders = FolderPaths(client, workers=4)
    assert folders.path("funds") == "Inbox/Funds"
    assert folders.path("funds") == "Inbox/Funds"
    assert sorted(client.requested) == ["funds", "inbox", "sentitems"]


def test_a_deleted_folder_leaves_the_names_below_it(caplog):
    client = FakeFolders()
    folders = FolderPaths(client, workers=4)
    folders.lookup(["orphan", "gone"])
    assert folders.path("gone") == ""
    assert folders.path("orphan") == "Kept"
    assert "no longer exists" in caplog.text
    # A folder that is gone is asked for once, not once per message.
    folders.lookup(["gone"])
    assert client.requested.count("gone") == 1


def test_other_errors_fail_the_run():
    class Failing(FakeFolders):
        def fetch_folder(self, folder_id: str) -> dict:
            if folder_id == "inbox":
                raise GraphError("Graph answered 500", 500)
            return super().fetch_folder(folder_id)

    with pytest.raises(GraphError, match="500"):
        FolderPaths(Failing(), workers=4).lookup(["inbox"])


def test_a_parent_loop_ends_with_one_request_per_folder():
    client = FakeFolders()
    folders = FolderPaths(client, workers=4)
    path = folders.path("loop-a")
    assert path.endswith("B/A") and len(path.split("/")) == MAX_DEPTH
    assert sorted(client.requested) == ["loop-a", "loop-b", "sentitems"]
