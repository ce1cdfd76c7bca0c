"""The engine's pure decisions, table by table: scan window, next cursor, self-audit days,
pipeline chunks."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from fund_mail.archive.cursor import Cursor
from fund_mail.engine import ScanPlan, next_cursor, plan_scan, self_audit_days, stage_sizes

T = datetime(2025, 6, 30, 3, 0, tzinfo=UTC)
FLOOR = datetime(2025, 6, 1, tzinfo=UTC)
OVERLAP = timedelta(minutes=30)
SEOUL = ZoneInfo("Asia/Seoul")


@pytest.mark.parametrize(
    ("cursor", "since", "expected"),
    [
        # Normal: from the cursor minus the overlap; the floor stays the baseline.
        (Cursor("c", T, archive_floor=FLOOR), None, ScanPlan(FLOOR, T - OVERLAP, T)),
        # Just after the baseline the overlap never reaches below the floor.
        (
            Cursor("c", FLOOR + timedelta(minutes=5), archive_floor=FLOOR),
            None,
            ScanPlan(FLOOR, FLOOR, FLOOR + timedelta(minutes=5)),
        ),
        # A cursor of the previous tool (no floor): it archived up to its cursor.
        (Cursor("c", T), None, ScanPlan(T, T, T)),
        # --since wins over the cursor, and becomes the floor.
        (Cursor("c", T, archive_floor=FLOOR), FLOOR, ScanPlan(FLOOR, FLOOR, T)),
        (None, FLOOR, ScanPlan(FLOOR, FLOOR, FLOOR)),
    ],
)
def test_plan_scan(cursor, since, expected):
    assert plan_scan(cursor, since, OVERLAP) == expected


def message(moment, mid="new"):
    return {"id": mid, "receivedDateTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "subject": "s"}


PLAN = ScanPlan(FLOOR, T - OVERLAP, T)
BEFORE = Cursor("old", T, "old subject", FLOOR)


@pytest.mark.parametrize(
    ("newest", "expected"),
    [
        # The newest message seen becomes the cursor.
        (message(T + timedelta(minutes=3)), Cursor("new", T + timedelta(minutes=3), "s", FLOOR)),
        # Nothing new: the cursor stays.
        (None, BEFORE),
        # Only older mail seen (inside the overlap): the cursor never moves back.
        (message(T - timedelta(minutes=3)), BEFORE),
        # A receivedDateTime in the future (2099) never becomes the cursor.
        (message(datetime(2099, 1, 1, tzinfo=UTC)), BEFORE),
        # A few seconds of clock skew between the PC and Microsoft 365 are fine.
        (message(T + timedelta(minutes=62)), Cursor("new", T + timedelta(minutes=62), "s", FLOOR)),
    ],
)
def test_next_cursor(newest, expected):
    now = T + timedelta(minutes=60)
    assert next_cursor(BEFORE, PLAN, newest, now) == expected


def local(day, hour, minute=0):
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SEOUL)


D = date(2025, 6, 30)


@pytest.mark.parametrize(
    ("now_local", "audit_at", "audit_days", "floor", "expected"),
    [
        (local(D, 0, 59), "01:00", 2, None, []),  # before AUDIT_AT
        (local(D, 1, 0), "01:00", 2, None, [D - timedelta(days=2), D - timedelta(days=1)]),
        (local(D, 23, 0), "01:00", 1, None, [D - timedelta(days=1)]),
        (local(D, 9, 0), "01:00", 0, None, []),  # AUDIT_DAYS=0 turns it off
        # Never a day wholly before the archive floor: no backfill through the back door.
        (local(D, 9, 0), "01:00", 3, local(D - timedelta(days=1), 15), [D - timedelta(days=1)]),
        (local(D, 9, 0), "01:00", 3, local(D, 8), []),
        (local(D, 6, 30), "06:30", 1, None, [D - timedelta(days=1)]),
    ],
)
def test_self_audit_days(now_local, audit_at, audit_days, floor, expected):
    assert self_audit_days(now_local, audit_at, audit_days, floor) == expected


@pytest.mark.parametrize(
    ("count", "staged", "publish_every", "expected"),
    [
        (0, 0, 2000, []),
        (1000, 0, 2000, [100] * 10),  # a page: chunks of 100, written while the rest downloads
        (250, 0, 2000, [100, 100, 50]),
        (250, 1950, 2000, [50, 100, 100]),  # the DB at 2,000 is published before the rest
        (12, 0, 5, [5, 5, 2]),  # a small PUBLISH_EVERY: never more than one DB's worth
        (7, 3, 5, [2, 5]),
        (150, 0, 150, [100, 50]),
    ],
)
def test_stage_sizes(count, staged, publish_every, expected):
    assert stage_sizes(count, staged, publish_every) == expected
