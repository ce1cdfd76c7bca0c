"""The offset-free paging contract (graph/paging.py), decision by decision."""

from datetime import UTC, datetime, timedelta

import pytest

from fund_mail.graph.paging import (
    SECOND_OVERLAP,
    NoProgress,
    PageQuery,
    PageSeen,
    Window,
    next_query,
)

T0 = datetime(2025, 6, 30, 9, 0, 0, tzinfo=UTC)
WINDOW = Window(T0 - timedelta(days=1), T0 + timedelta(days=1))


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def page(times: list[int], more: bool, ids: list[str] | None = None) -> PageSeen:
    return PageSeen(ids or [f"id{n}" for n in range(len(times))], [at(t) for t in times], more)


@pytest.mark.parametrize(
    ("query", "seen", "known", "expected"),
    [
        # The last page: no nextLink, the window is exhausted.
        (PageQuery(WINDOW), page([5, 4], more=False), set(), None),
        # A page over several seconds: the next asks for its oldest second again, by time.
        (PageQuery(WINDOW), page([9, 8, 7], more=True), set(), PageQuery(WINDOW, upper=at(7))),
        (
            PageQuery(WINDOW, upper=at(7)),
            page([7, 6, 3], more=True),
            set(),
            PageQuery(WINDOW, upper=at(3)),
        ),
        # A whole page in one second: walk that second with an overlap.
        (
            PageQuery(WINDOW),
            page([4] * 1000, more=True),
            set(),
            PageQuery(WINDOW, second=at(4), skip=1000 - SECOND_OVERLAP),
        ),
        # Most of a page in its oldest second: walk that second straight away.
        (
            PageQuery(WINDOW),
            page([9] + [4] * 999, more=True),
            set(),
            PageQuery(WINDOW, second=at(4), skip=999 - SECOND_OVERLAP),
        ),
        # A short page in one second (Graph may return fewer than $top): start the walk at 0.
        (PageQuery(WINDOW), page([4] * 10, more=True), set(), PageQuery(WINDOW, second=at(4))),
        # The walk goes on while its first message is known.
        (
            PageQuery(WINDOW, second=at(4), skip=950),
            page([4] * 1000, more=True, ids=["a"] + [f"n{i}" for i in range(999)]),
            {"a"},
            PageQuery(WINDOW, second=at(4), skip=1900),
        ),
        # The second is exhausted: continue strictly below it.
        (
            PageQuery(WINDOW, second=at(4), skip=1900),
            page([4] * 600, more=False, ids=["a"] + [f"n{i}" for i in range(599)]),
            {"a"},
            PageQuery(WINDOW, upper=at(4), upper_inclusive=False),
        ),
        # Deletions moved the second's list by more than the overlap: walk it again from 0.
        (
            PageQuery(WINDOW, second=at(4), skip=950),
            page([4] * 1000, more=True, ids=[f"new{i}" for i in range(1000)]),
            {"a"},
            PageQuery(WINDOW, second=at(4), skip=0),
        ),
        # ... also on the walk's last page.
        (
            PageQuery(WINDOW, second=at(4), skip=950),
            page([4] * 10, more=False, ids=[f"new{i}" for i in range(10)]),
            {"a"},
            PageQuery(WINDOW, second=at(4), skip=0),
        ),
    ],
)
def test_next_query(query, seen, known, expected):
    assert next_query(query, seen, known) == expected


def test_no_progress_ends_with_an_error_instead_of_a_loop():
    with pytest.raises(NoProgress):
        next_query(PageQuery(WINDOW), PageSeen([], [], more=True), set())
    with pytest.raises(NoProgress):
        # A server that answers above the bound it was given.
        next_query(PageQuery(WINDOW, upper=at(3)), page([5, 4], more=True), set())
    with pytest.raises(NoProgress):
        # A walk whose pages are too short to move past the overlap.
        next_query(
            PageQuery(WINDOW, second=at(4), skip=100),
            page([4] * 10, more=True, ids=["a"] + [f"n{i}" for i in range(9)]),
            {"a"},
        )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            PageQuery(WINDOW),
            "receivedDateTime ge 2025-06-29T09:00:00Z and receivedDateTime lt "
            "2025-07-01T09:00:00Z and isDraft eq false",
        ),
        (
            PageQuery(Window(T0)),
            "receivedDateTime ge 2025-06-30T09:00:00Z and isDraft eq false",
        ),
        (
            PageQuery(WINDOW, upper=at(3)),
            "receivedDateTime ge 2025-06-29T09:00:00Z and receivedDateTime le "
            "2025-06-30T09:00:03Z and isDraft eq false",
        ),
        (
            PageQuery(WINDOW, upper=at(3), upper_inclusive=False),
            "receivedDateTime ge 2025-06-29T09:00:00Z and receivedDateTime lt "
            "2025-06-30T09:00:03Z and isDraft eq false",
        ),
        (
            PageQuery(WINDOW, second=at(3), skip=950),
            "receivedDateTime ge 2025-06-30T09:00:03Z and receivedDateTime le "
            "2025-06-30T09:00:03Z and isDraft eq false",
        ),
    ],
)
def test_filters_lead_with_received_date_time(query, expected):
    # Graph answers InefficientFilter unless the $orderby property leads the filter.
    assert query.filter() == expected
