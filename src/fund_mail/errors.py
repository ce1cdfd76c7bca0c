"""Failure modes and their exit codes.

Each failure mode has its own exit code so that Task Scheduler history and wrapper scripts can
tell them apart without parsing logs.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    RUN_FAILED = 1  # fetch, download or delivery failed; the cursor did not move past lost work
    CONFIG = 2  # bad .env, bad arguments, unusable DATA_DIR
    LOCKED = 3  # another run of the same command holds the lock
    AUTH = 4  # the token endpoint refused us (wrong secret, unknown tenant, ...)
    ACCESS_DENIED = 5  # Graph refused the mailbox (permission or access policy)
    STATE_CORRUPT = 6  # LAST_TIME.json or the archive index cannot be read
    INCOMPLETE = 7  # a check found the archive incomplete or altered (audit --dry-run, --verify)


# From harmless to worst: a run over several mailboxes exits with its worst mailbox's code.
# LOCKED means another run is doing the work; a refused configuration or state needs a person.
SEVERITY = (
    ExitCode.OK,
    ExitCode.LOCKED,
    ExitCode.RUN_FAILED,
    ExitCode.INCOMPLETE,
    ExitCode.ACCESS_DENIED,
    ExitCode.AUTH,
    ExitCode.STATE_CORRUPT,
    ExitCode.CONFIG,
)


def worst(codes: list[int]) -> ExitCode:
    return max((ExitCode(c) for c in codes), key=SEVERITY.index, default=ExitCode.OK)


class FundMailError(Exception):
    """Base class: an error whose message is safe to show the operator as it is."""

    exit_code: ExitCode = ExitCode.RUN_FAILED
    # What the run had archived before it failed (e.g. an upload failing after the archive),
    # so that the run history keeps the counts. Set by the CLI; RunResult or None.
    result: Any = None


class ConfigError(FundMailError):
    exit_code = ExitCode.CONFIG

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        where = f" in {source}" if source else ""
        lines = [f"Configuration problem{'s' if len(problems) > 1 else ''}{where}:"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class UsageError(FundMailError):
    exit_code = ExitCode.CONFIG


class LockedError(FundMailError):
    exit_code = ExitCode.LOCKED


class AuthError(FundMailError):
    exit_code = ExitCode.AUTH


class AccessDeniedError(FundMailError):
    exit_code = ExitCode.ACCESS_DENIED


class StateError(FundMailError):
    exit_code = ExitCode.STATE_CORRUPT


class GraphError(FundMailError):
    """Graph answered with an error we do not retry (or retries ran out)."""

    def __init__(self, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RunFailed(FundMailError):
    """Part of the work failed (for example some days of a range); the rest is done."""


class IncompleteError(FundMailError):
    """A check found the archive incomplete or altered; nothing was changed."""

    exit_code = ExitCode.INCOMPLETE


class DeliveryError(FundMailError):
    """The SFTP upload failed; the archive is safe locally and stays queued."""


class UnsafePath(DeliveryError):
    """A DB names a file outside DATA_DIR: that DB is refused, the others still go."""
