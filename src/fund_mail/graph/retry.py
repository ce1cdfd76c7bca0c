"""The retry policy for every HTTP request fund_mail makes (Graph and the sign-in endpoint)."""

from __future__ import annotations

from urllib3.util.retry import Retry


class GraphRetry(Retry):
    """urllib3's Retry, but accepting the fractional Retry-After seconds Graph sends (2.128)."""

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = float(retry_after)
        except ValueError:
            return super().parse_retry_after(retry_after)
        return min(max(seconds, 0.0), self.retry_after_max)


def build_retry(backoff: float, methods: frozenset[str] | None = None) -> GraphRetry:
    return GraphRetry(
        total=10,
        connect=5,
        read=5,
        status=8,
        backoff_factor=backoff,
        backoff_max=60,
        status_forcelist=(429, 500, 502, 503, 504),
        respect_retry_after_header=True,
        raise_on_status=False,
        # GET everywhere; the token POST too (client credentials are safe to repeat).
        allowed_methods=methods or Retry.DEFAULT_ALLOWED_METHODS,
    )
