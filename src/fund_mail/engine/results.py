"""What a run did: messages, attachments, bytes and the DBs it published."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from fund_mail.archive.rows import parse_graph_time


@dataclass
class RunResult:
    """What one run (or one day of a range) archived, for its summary line and history."""

    messages: int = 0
    attachments: int = 0
    bytes: int = 0
    seconds: float = 0.0
    db_paths: list[Path] = field(default_factory=list)
    baseline: bool = False
    requests: int = 0
    quarantined: int = 0

    @property
    def db_path(self) -> Path | None:
        return self.db_paths[-1] if self.db_paths else None

    def add(self, other: RunResult) -> None:
        self.messages += other.messages
        self.attachments += other.attachments
        self.bytes += other.bytes
        self.db_paths += other.db_paths
        self.quarantined += other.quarantined

    def summary(self, command: str) -> str:
        where = str(self.db_path) if self.db_path else "no mail to archive, no DB written"
        if len(self.db_paths) > 1:
            where = f"{len(self.db_paths)} DBs, the last {self.db_path}"
        if self.baseline:
            where = "baseline recorded, nothing archived"
        if self.quarantined:
            where += f"; {self.quarantined} message(s) set aside in DATA_DIR/quarantine"
        return (
            f"{command}: {self.messages} messages, {self.attachments} attachments, "
            f"{self.bytes} bytes, {self.seconds:.1f} s, {where}"
        )


def received(message: dict) -> datetime:
    return parse_graph_time(message["receivedDateTime"])
