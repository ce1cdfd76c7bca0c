"""Days run one after another under one policy: a failed day does not stop the others, a
systemic failure stops the range."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from fund_mail.engine.results import RunResult
from fund_mail.errors import (
    AccessDeniedError,
    AuthError,
    ConfigError,
    LockedError,
    RunFailed,
    StateError,
)

log = logging.getLogger(__name__)

# Failures that no other day of a range could escape: stop the range instead of repeating them.
SYSTEMIC = (AuthError, AccessDeniedError, ConfigError, LockedError, StateError)


@dataclass
class RangeResult:
    """A range of days: the total, the days that failed, a line per day and the errors."""

    total: RunResult = field(default_factory=RunResult)
    failed: list[date] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)


def run_range(
    days: list[date],
    run_one: Callable[[date], RunResult],
    describe: Callable[[date, RunResult], str],
    after_day: Callable[[date, RunResult], None] | None = None,
) -> RangeResult:
    """Run each day in turn under settle_range's policy."""

    lines: list[str] = []

    def done(day: date, result: RunResult) -> None:
        lines.append(describe(day, result))
        if after_day is not None:
            after_day(day, result)

    outcome = settle_range(_attempts(days, run_one), done)
    outcome.lines = lines
    return outcome


def _attempts(
    days: list[date], run_one: Callable[[date], RunResult]
) -> Iterator[tuple[date, RunResult | Exception]]:
    for day in days:
        try:
            yield day, run_one(day)
        except Exception as e:  # noqa: BLE001 - settle_range decides
            yield day, e


def settle_range(
    outcomes: Iterable[tuple[date, RunResult | Exception]],
    on_done: Callable[[date, RunResult], None] | None = None,
) -> RangeResult:
    """The range policy: a failed day is listed and the others go on, unless the failure is
    systemic (sign-in, access, configuration, lock, state), which every day would repeat."""
    outcome = RangeResult()
    for day, result in outcomes:
        if isinstance(result, SYSTEMIC):
            raise result
        if isinstance(result, Exception):
            log.error("%s failed: %s", day, result)
            outcome.failed.append(day)
            outcome.errors.append(result)
            continue
        outcome.total.add(result)
        if on_done is not None:
            on_done(day, result)
    return outcome


def range_failure(outcome: RangeResult, retry_hint: str) -> RunFailed | None:
    if not outcome.failed:
        return None
    error = RunFailed(
        f"{len(outcome.failed)} day(s) failed: {', '.join(map(str, outcome.failed))}. "
        f"Run them again with {retry_hint}."
    )
    error.result = outcome.total
    return error
