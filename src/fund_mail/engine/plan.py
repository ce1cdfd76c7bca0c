"""Pure decisions, apart from their effects so that they get table-driven tests: the scan
window of fund_mail_once, its next cursor, the days the self-audit covers, the pipeline's
chunks and a local day's bounds. No network, no disk, no clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import NamedTuple

from fund_mail.archive.cursor import Cursor
from fund_mail.archive.rows import parse_graph_time
from fund_mail.config import Config

# The unit of the download pipeline: a chunk's downloads are queued at once, and its rows are
# written when they are done. Small chunks keep the rows of a page written while the rest of
# the page downloads, so little is left to write after the last answer; PUBLISH_EVERY, not the
# chunk, decides when a DB is published.
STAGE_MESSAGES = 100
FUTURE_SKEW = timedelta(minutes=5)  # a receivedDateTime further ahead never becomes the cursor


class ScanPlan(NamedTuple):
    """What one fund_mail_once run lists, and what it may archive."""

    floor: datetime  # nothing received before it is archived
    scan_from: datetime  # the window listed: [scan_from, now)
    last_time: datetime  # the cursor's time before the run


def plan_scan(cursor: Cursor | None, since: datetime | None, overlap: timedelta) -> ScanPlan:
    """The one place that decides a run's scan window."""
    if since is not None:
        return ScanPlan(since, since, cursor.last_fetch_time if cursor else since)
    if cursor is None:
        raise ValueError("a run without a cursor takes a baseline first")
    floor = cursor.archive_floor or cursor.last_fetch_time
    last = cursor.last_fetch_time
    return ScanPlan(floor, max(floor, last - overlap), last)


def next_cursor(
    previous: Cursor | None, plan: ScanPlan, newest: dict | None, now: datetime
) -> Cursor:
    """The cursor after a successful run: the newest message seen, never a future one.

    A receivedDateTime far ahead of the clock (a broken sender's 2099) would make every later
    scan start after all real mail, so such a message is archived but never becomes the cursor.
    """
    if newest is not None:
        moment = parse_graph_time(newest["receivedDateTime"])
        if plan.last_time <= moment <= now + FUTURE_SKEW:
            return Cursor(newest["id"], moment, newest.get("subject") or "", plan.floor)
    return Cursor(
        previous.last_email_id if previous else "",
        plan.last_time,
        previous.title if previous else "",
        plan.floor,
    )


def self_audit_days(
    now_local: datetime, audit_at: str, audit_days: int, floor: datetime | None
) -> list[date]:
    """The days the daily self-audit covers at now_local: none before AUDIT_AT, none when
    AUDIT_DAYS is 0, and never a day wholly before the archive floor (no backfill by the back
    door). Whether today's audit already ran is the caller's question."""
    hour, minute = map(int, audit_at.split(":"))
    if audit_days <= 0 or now_local.time() < clock_time(hour, minute):
        return []
    today = now_local.date()
    days = [today - timedelta(days=n) for n in range(audit_days, 0, -1)]
    if floor is not None:
        first = floor.astimezone(now_local.tzinfo).date()
        days = [d for d in days if d >= first]
    return days


def stage_sizes(count: int, staged: int, publish_every: int) -> list[int]:
    """How count new messages of a day are cut into pipeline chunks, staged messages of the day
    already being in it: at most STAGE_MESSAGES each, never straddling a multiple of
    PUBLISH_EVERY, so that each published DB holds exactly PUBLISH_EVERY messages."""
    sizes = []
    while count > 0:
        size = min(STAGE_MESSAGES, publish_every - staged % publish_every, count)
        sizes.append(size)
        staged += size
        count -= size
    return sizes


def day_bounds(day: date, config: Config) -> tuple[datetime, datetime]:
    """[00:00, 24:00) of a local day in TIMEZONE, as UTC instants (DST-safe)."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=config.tz)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=config.tz)
    return start.astimezone(UTC), end.astimezone(UTC)
