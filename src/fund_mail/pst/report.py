"""The reconciliation report of a PST import: per folder, items seen against mails written and
attachments expected against written; every item class, archived or left out; every part that
could not be read. It says that everything was read only when nothing is missing."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FolderTally:
    seen: int = 0
    written: int = 0
    already: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason (class, draft) -> count
    archived: Counter = field(default_factory=Counter)  # message class -> count
    unreadable: int = 0
    attachments_expected: int = 0
    attachments_written: int = 0


@dataclass
class Problem:
    folder: str
    item: str
    reason: str


COUNTS = ("seen", "written", "already", "unreadable", "attachments_expected", "attachments_written")
ALL_READ = "Every item and attachment was read."


@dataclass
class ImportReport:
    db_path: Path
    folders: dict[str, FolderTally] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the store was read (top folder, owner)

    def tally(self, folder: str) -> FolderTally:
        return self.folders.setdefault(folder, FolderTally())

    @property
    def written(self) -> int:
        return sum(t.written for t in self.folders.values())

    def totals(self) -> FolderTally:
        total = FolderTally()
        for t in self.folders.values():
            for name in COUNTS:
                setattr(total, name, getattr(total, name) + getattr(t, name))
            total.skipped.update(t.skipped)
            total.archived.update(t.archived)
        return total

    @property
    def complete(self) -> bool:
        """True only when nothing was unreadable and every expected attachment was written."""
        total = self.totals()
        return (
            not self.problems
            and not total.unreadable
            and total.attachments_written == total.attachments_expected
        )

    def render(self) -> str:
        header = (
            f"{'folder':<40} {'items':>6} {'mails':>6} {'before':>6} {'skipped':>8} {'attach':>13}"
        )
        lines = [f"Reconciliation for {self.db_path}:", *self.notes, header, "-" * len(header)]
        empty = [name for name, t in self.folders.items() if not t.seen]
        for name, t in sorted(self.folders.items()):
            if t.seen:
                lines.append(self._line(name, t))
        total = self.totals()
        lines.append(self._line("total", total, mark=False))
        lines.append(
            f"({len(empty)} empty folders not shown) items: seen; mails: written now; before: "
            "already in the DB from an earlier run; attach: written/expected"
        )
        if total.archived:
            lines.append("Archived: " + _counts(total.archived))
        if total.skipped:
            lines.append("Skipped (not mail, or drafts): " + _counts(total.skipped))
        if self.problems:
            lines.append(f"Could not be read ({len(self.problems)}):")
            lines += [f"  {x.folder} / {x.item}: {x.reason}" for x in self.problems]
        if self.complete:
            lines.append(ALL_READ)
        else:
            missing = total.attachments_expected - total.attachments_written
            lines.append(
                f"NOT everything was read: {total.unreadable} item(s) and {missing} "
                f"attachment(s) missing, {len(self.problems)} problem(s) listed above."
            )
        return "\n".join(lines)

    @staticmethod
    def _line(name: str, t: FolderTally, mark: bool = True) -> str:
        skipped = sum(t.skipped.values())
        missing = mark and t.attachments_written != t.attachments_expected
        return (
            f"{name[:40]:<40} {t.seen:>6} {t.written:>6} {t.already:>6} {skipped:>8} "
            f"{t.attachments_written:>6}/{t.attachments_expected:<6}"
            + ("  <-- missing" if missing else "")
        ).rstrip()


def _counts(counter: Counter) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counter.items()))
