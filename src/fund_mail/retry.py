"""The one retry policy: how often a failing call is tried, and how long to wait between tries.

Every retry in fund_mail goes through a RetryPolicy: Graph requests and the sign-in endpoint
(through the urllib3 Retry the policy builds, and `call` for a body cut off mid-stream), token
answers that say "try later", SFTP connections, and a rename Windows refuses while another
process holds the file. What differs between them (how many tries, the wait, whether it grows)
is a parameter of the policy, set where the call is made; the loop itself exists once, here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

T = TypeVar("T")

# HTTP answers that mean "try again later": throttling and the server-side 5xx of a busy service.
RETRY_STATUSES = (429, 500, 502, 503, 504)


class HttpRetry(Retry):
    """urllib3's Retry, but accepting the fractional Retry-After seconds Graph sends (2.128)."""

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = float(retry_after)
        except ValueError:
            return super().parse_retry_after(retry_after)
        return min(max(seconds, 0.0), self.retry_after_max)


def _never(error: BaseException) -> bool:
    return False


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing call is retried.

    attempts: tries in all, the first included, of a call failing with a retryable error.
    backoff: seconds before the first retry; each later wait is `multiplier` times the one
        before (1: the same wait each time), and no wait is longer than `cap`.
    status_attempts, total_attempts: for HTTP only. Tries of a request answered with one of
        RETRY_STATUSES, where the server's Retry-After wins over the backoff; and tries of one
        request whatever its failures. A policy without them cannot build an urllib3 Retry.
    """

    attempts: int
    backoff: float
    multiplier: float = 2.0
    cap: float = 60.0
    status_attempts: int | None = None
    total_attempts: int | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff < 0 or self.multiplier < 1 or self.cap < 0:
            raise ValueError(f"not a usable retry policy: {self!r}")

    def wait(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 is the first retry)."""
        return min(self.cap, self.backoff * self.multiplier ** (retry - 1))

    def call(
        self,
        action: Callable[[], T],
        retry_on: type[BaseException] | tuple[type[BaseException], ...],
        what: str,
        *,
        give_up: Callable[[BaseException], bool] = _never,
        failed: Callable[[BaseException, int], Exception] | None = None,
    ) -> T:
        """Run action, retrying it on retry_on errors until it succeeds or the tries run out.

        give_up(error) stops early, for an error that another layer has already retried.
        When the call fails for good, failed(error, tries) builds the exception to raise (from
        the last error); without it the last error itself is raised.
        """
        for attempt in range(1, self.attempts + 1):
            try:
                return action()
            except retry_on as e:
                if attempt == self.attempts or give_up(e):
                    if failed is None:
                        raise
                    raise failed(e, attempt) from e
                delay = self.wait(attempt)
                log.warning(
                    "%s failed (%s); try %d of %d in %.1fs",
                    what,
                    _first_line(e),
                    attempt + 1,
                    self.attempts,
                    delay,
                )
                self.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def http_retry(self, methods: frozenset[str] | None = None) -> HttpRetry:
        """The urllib3 Retry that applies this policy inside one HTTP request.

        urllib3 retries before a body arrives: refused or reset connections, read timeouts and
        RETRY_STATUSES, honouring Retry-After. It schedules the backoff its own way (no wait
        before the first retry, then backoff x 2, x 4, ... up to cap).
        """
        if self.status_attempts is None or self.total_attempts is None:
            raise ValueError("an HTTP retry needs status_attempts and total_attempts")
        return HttpRetry(
            total=self.total_attempts - 1,
            connect=self.attempts - 1,
            read=self.attempts - 1,
            status=self.status_attempts - 1,
            backoff_factor=self.backoff,
            backoff_max=self.cap,
            status_forcelist=RETRY_STATUSES,
            respect_retry_after_header=True,
            raise_on_status=False,
            other=0,  # a certificate error does not heal by retrying: report it at once
            allowed_methods=methods or Retry.DEFAULT_ALLOWED_METHODS,
        )
