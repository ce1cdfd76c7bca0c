"""Offset-free paging of a message list: the next page is asked for by time, not by $skip.

Graph's nextLink pages by `$skip`, an offset into a result that is evaluated again for every
page. When messages an earlier page returned are deleted or moved out of the filter, every later
page starts that many items too late, and as many unread items are never returned. So fund_mail
never follows a message list's nextLink. It only reads whether one is present (more follows).

The contract, for a time window [start, end) listed newest first:

1. The first page asks for the whole window.
2. A follow-up page asks for `receivedDateTime le <oldest second seen so far>`: the same second
   again, because more messages may share it. Ids already listed are dropped. This costs at
   most one extra request for each second that spans two pages.
3. When a whole page shares one second T (or most of it does), a bound alone would return the
   same page forever (or re-read most of it).
   That second is then walked on its own (`ge T and le T`) with `$skip`, the only paging Graph
   offers inside one second. Each step re-reads SECOND_OVERLAP messages that were already listed
   and checks that the first one is known. If it is not, deletions moved the list by more than
   the overlap, and the walk of that second starts again from 0: slower, never lossy.
4. When the second is exhausted, paging continues with `receivedDateTime lt T`.
5. The listing ends when a page comes back without a nextLink.

Every step is decided by `next_query`, a pure function, so the rules get table-driven tests.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from fund_mail.archive.rows import graph_time

MAX_SLICES = 6  # between the two end pages: 8 slices of the window at most
SLICE_FILL = 0.8  # aim each slice at 80% of a page, so an uneven spread still fits in one
SECOND_OVERLAP = 50  # known messages re-read per step inside one second, to detect a shift
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Window(NamedTuple):
    """[start, end) in receivedDateTime; end None means open towards the future."""

    start: datetime = EPOCH
    end: datetime | None = None


class PageQuery(NamedTuple):
    """One list request. `upper` is the keyset bound; `second` set means a one-second walk."""

    window: Window
    upper: datetime | None = None  # receivedDateTime le/lt upper
    upper_inclusive: bool = True
    second: datetime | None = None
    skip: int = 0

    def filter(self) -> str:
        # receivedDateTime leads: Graph answers InefficientFilter when the $orderby property
        # is not the first clause of $filter.
        if self.second is not None:
            moment = graph_time(self.second)
            clauses = [f"receivedDateTime ge {moment}", f"receivedDateTime le {moment}"]
        else:
            clauses = [f"receivedDateTime ge {graph_time(self.window.start)}"]
            if self.upper is not None:
                op = "le" if self.upper_inclusive else "lt"
                clauses.append(f"receivedDateTime {op} {graph_time(self.upper)}")
            elif self.window.end is not None:
                clauses.append(f"receivedDateTime lt {graph_time(self.window.end)}")
        return " and ".join([*clauses, "isDraft eq false"])


class PageSeen(NamedTuple):
    """What a page told the pager: its messages' ids and seconds, and whether more follow."""

    ids: list[str]
    times: list[datetime]
    more: bool


class NoProgress(Exception):
    """The listing would ask for the same thing again: stop instead of looping."""


def next_query(query: PageQuery, page: PageSeen, known_before: set[str]) -> PageQuery | None:
    """The request after `query`, given what it returned; None when the window is exhausted.

    known_before holds the ids listed before this page, for the overlap check of a walk.
    """
    if query.second is not None:
        if query.skip > 0 and (not page.ids or page.ids[0] not in known_before):
            # The list moved by more than the overlap: deletions ahead of our offset.
            return query._replace(skip=0)
        if not page.more:
            # This second is done; continue with everything older than it.
            return PageQuery(query.window, upper=query.second, upper_inclusive=False)
        step = query.skip + len(page.ids)
        following = max(0, step - SECOND_OVERLAP)
        if following <= query.skip:
            raise NoProgress(f"a walk of {graph_time(query.second)} made no progress")
        return query._replace(skip=following)
    if not page.more:
        return None
    if not page.times:
        raise NoProgress("Graph returned an empty page that says more follow")
    oldest, newest = min(page.times), max(page.times)
    if oldest == newest:
        # The whole page is one second: a time bound would return this page again.
        listed = len(page.ids)
        return PageQuery(query.window, second=oldest, skip=max(0, listed - SECOND_OVERLAP))
    if query.upper is not None and oldest >= query.upper and query.upper_inclusive:
        raise NoProgress(f"paging did not move below {graph_time(query.upper)}")
    in_oldest = sum(1 for t in page.times if t == oldest)
    if in_oldest * 2 > len(page.times):
        # Most of the page is its oldest second: re-reading it by time would waste most of the
        # next page, so walk that second straight away.
        return PageQuery(query.window, second=oldest, skip=max(0, in_oldest - SECOND_OVERLAP))
    return PageQuery(query.window, upper=oldest, upper_inclusive=True)


def per_second(times: list[datetime]) -> float:
    """Messages per second over the seconds a page spans (its own first and last included)."""
    if not times:
        return 0.0
    return len(times) / ((max(times) - min(times)).total_seconds() + 1)


def plan_slices(window: Window, density: float, page_size: int) -> list[Window]:
    """Cut window into 1-6 equal slices of whole seconds, to be listed side by side.

    window lies between a day's newest and oldest pages, which makes 3-8 slices of the day.
    density (messages per second, from those two pages) estimates the messages inside; each
    slice aims at SLICE_FILL of a page, so it costs one request, or one more when the mail is
    uneven.
    """
    if window.end is None:
        raise ValueError("only a closed window can be cut into slices")
    rest = max(1, int((window.end - window.start).total_seconds()))
    count = math.ceil(density * rest / (page_size * SLICE_FILL))
    count = max(1, min(MAX_SLICES, count, rest))
    step = timedelta(seconds=rest // count)
    bounds = [window.start + step * i for i in range(count)] + [window.end]
    return [Window(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
