"""The incremental cursor: DATA_DIR/LAST_TIME.json."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from fund_mail.archive.fsutil import write_atomic
from fund_mail.archive.rows import graph_time, local_time, parse_graph_time
from fund_mail.errors import StateError

STATE_NAME = "LAST_TIME.json"
FUTURE_TOLERANCE = timedelta(days=1)  # clock skew between the PC and Microsoft 365
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # the cursor of an empty mailbox; nothing is older


def _trusted_time(data: dict, key: str) -> datetime:
    """A cursor time this tool could have written: from 1970 up to about now.

    A year-0001 or year-9999 time would overflow the scan window's arithmetic, and a time in
    the future would make every scan start after the newest mail.
    """
    text = str(data[key])
    moment = parse_graph_time(text)
    if moment < EARLIEST:
        raise ValueError(f"{key} {text} is before 1970")
    if moment > datetime.now(UTC) + FUTURE_TOLERANCE:
        raise ValueError(f"{key} {text} is in the future")
    return moment


class Cursor(NamedTuple):
    """Where fund_mail_once stands.

    last_fetch_time is the newest receivedDateTime seen; the next scan starts OVERLAP_MINUTES
    before it. archive_floor is the baseline: nothing received before it is ever archived.
    The first four fields keep the existing deployment's LAST_TIME.json format.
    """

    last_email_id: str
    last_fetch_time: datetime
    title: str = ""
    archive_floor: datetime | None = None

    def to_json(self, tz: ZoneInfo) -> dict:
        return {
            "last_email_id": self.last_email_id,
            "last_fetch_time": graph_time(self.last_fetch_time),
            "last_fetch_time_kst": local_time(self.last_fetch_time, tz),
            "title": self.title,
            "archive_floor": graph_time(self.archive_floor) if self.archive_floor else None,
            "updated_at": graph_time(datetime.now(tz)),
            "format": 2,
        }


def read_cursor(data_dir: Path) -> Cursor | None:
    """The saved cursor, None when there is none yet; StateError when it cannot be trusted."""
    path = data_dir / STATE_NAME
    if not path.exists():
        return None
    fix = (
        f"Restore {path} from a backup, or run once with --since set to the last time you know "
        "was archived (mail already archived is skipped, not duplicated)."
    )
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return Cursor(
            last_email_id=str(data.get("last_email_id") or ""),
            last_fetch_time=_trusted_time(data, "last_fetch_time"),
            title=str(data.get("title") or ""),
            archive_floor=_trusted_time(data, "archive_floor")
            if data.get("archive_floor")
            else None,
        )
    except (OSError, ValueError, KeyError, TypeError, OverflowError) as e:
        raise StateError(f"{path} is unreadable ({type(e).__name__}: {e}). {fix}") from e


def write_cursor(data_dir: Path, cursor: Cursor, tz: ZoneInfo) -> None:
    """Atomically (fsutil.write_atomic): a crash leaves the old cursor or the new one."""
    write_atomic(
        data_dir / STATE_NAME, json.dumps(cursor.to_json(tz), ensure_ascii=False, indent=2)
    )


def set_aside(path: Path) -> Path:
    """Keep an unreadable state file for inspection instead of overwriting it."""
    target = path.with_name(f"{path.name}.unreadable-{datetime.now().strftime('%Y%m%d%H%M%S')}")
    os.replace(path, target)
    return target
