"""Graph's parameters for the one retry policy (fund_mail.retry), for Graph and the sign-in endpoint."""

from __future__ import annotations

import requests
from urllib3.exceptions import MaxRetryError

from fund_mail.retry import RetryPolicy

# One request: urllib3 tries a refused or reset connection and a read timeout 6 times, a 429 or
# 5xx answer 9 times (Graph throttles in bursts; Retry-After says how long), and 11 times in all.
# A response whose body is cut off reaches the caller, which tries the whole request again, up to
# the same 6 tries.
GRAPH_ATTEMPTS = 6
GRAPH_STATUS_ATTEMPTS = 9
GRAPH_TOTAL_ATTEMPTS = 11

# msal replays a 429/5xx token answer from its cache for the Retry-After period (5 s when the
# header is missing or fractional), so a retry of the token waits a little longer than that.
TOKEN_ANSWERS = RetryPolicy(attempts=3, backoff=5.5, multiplier=1.0)

# What requests raises when a body is cut off, the connection fails or a read times out;
# ValueError is the JSON of a truncated body.
CUT_OFF = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ValueError,
)


def graph_policy(backoff: float) -> RetryPolicy:
    """Graph's and the sign-in endpoint's requests; `backoff` is RETRY_BACKOFF."""
    return RetryPolicy(
        attempts=GRAPH_ATTEMPTS,
        backoff=backoff,
        status_attempts=GRAPH_STATUS_ATTEMPTS,
        total_attempts=GRAPH_TOTAL_ATTEMPTS,
    )


def retried_by_urllib3(error: BaseException) -> bool:
    """True when urllib3 has already spent its retries on the request: trying the whole request
    again would nest one retry series inside another (6 x 6 requests instead of 6)."""
    return bool(error.args) and isinstance(error.args[0], MaxRetryError)
