"""DATA_DIR/quarantine/: messages that cannot be stored at all, kept whole for a person to see.

Each file holds the raw JSON Graph sent and the reason; --status lists them. A quarantined
message does not stop the run, so one broken item never blocks the mailbox.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fund_mail.archive.fsutil import write_atomic

FOLDER = "quarantine"


def quarantine(data_dir: Path, message: Any, error: str, command: str) -> Path | None:
    """Write the raw message and the error to quarantine/ (atomically); returns the new file,
    or None when the same message is already there (the next scan's overlap lists it again)."""
    raw = json.dumps(message, ensure_ascii=False, default=repr)
    digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
    now = datetime.now(UTC)
    path = data_dir / FOLDER / f"{digest}.json"
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "error": error,
        "command": command,
        "quarantined_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "message": json.loads(raw),
    }
    write_atomic(path, json.dumps(record, ensure_ascii=False, indent=2))
    return path


def quarantined(data_dir: Path) -> list[tuple[str, str]]:
    """(file name, error) of each quarantined message, oldest first. Reads only."""
    folder = data_dir / FOLDER
    if not folder.is_dir():
        return []
    entries = []
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime):
        try:
            error = str(json.loads(path.read_text(encoding="utf-8")).get("error", ""))
        except (OSError, ValueError, AttributeError) as e:
            error = f"(unreadable: {type(e).__name__})"
        entries.append((path.name, error))
    return entries
