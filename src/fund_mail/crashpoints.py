"""Named points where the reliability tests kill the process, to prove crash consistency.

Inactive unless FUND_MAIL_CRASH_AT names the point; then reaching it kills the process at once
(SIGKILL: no cleanup, no finally blocks), exactly like a power cut or Task Manager's End task.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "attachment-partial",  # an attachment half written to its .part file
    "attachments-downloaded",  # files on disk, DB not written
    "db-partial",  # the temporary DB holds some rows, uncommitted
    "db-written",  # temporary DB complete, not yet recorded
    "index-committed",  # ids recorded, DB not yet renamed into place
    "chunk-published",  # a long catch-up published its first PUBLISH_EVERY messages
    "db-published",  # DB in place, cursor not yet saved
    "upload-partial",  # an upload is half sent
)


def reached(point: str) -> None:
    if os.environ.get("FUND_MAIL_CRASH_AT") == point:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
