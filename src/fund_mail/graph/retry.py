"""The retry policy for every HTTP request fund_mail makes (Graph and the sign-in endpoint)."""

from __future__ import annotations

from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from fund_mail.errors import ConfigError


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
        other=0,  # a certificate error does not heal by retrying: report it at once
        # GET everywhere; the token POST too (client credentials are safe to repeat).
        allowed_methods=methods or Retry.DEFAULT_ALLOWED_METHODS,
    )


class HttpsSession(requests.Session):
    """A session that verifies with the CA bundle named in .env.

    requests lets the REQUESTS_CA_BUNDLE environment variable override a session's own
    verify setting, so the bundle is passed with each request instead.
    """

    def __init__(self, ca_bundle: str = "") -> None:
        super().__init__()
        self.ca_bundle = ca_bundle

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        if self.ca_bundle and kwargs.get("verify") is None:
            kwargs["verify"] = self.ca_bundle
        return super().request(method, url, *args, **kwargs)


def https_session(
    backoff: float, ca_bundle: str = "", methods: frozenset[str] | None = None, pool: int = 10
) -> requests.Session:
    """The one way fund_mail makes an HTTPS session: the retry policy and the CA bundle."""
    session = HttpsSession(ca_bundle)
    session.mount(
        "https://", HTTPAdapter(max_retries=build_retry(backoff, methods), pool_maxsize=pool)
    )
    return session


def certificate_problem(url: str, error: Exception) -> ConfigError:
    """A TLS verification failure is a trust problem on this PC, not a tenant or mailbox one."""
    host = urlparse(url).hostname or url
    return ConfigError(
        [
            f"REQUESTS_CA_BUNDLE: the certificate of {host} is not trusted "
            f"({type(error).__name__}): if a proxy inspects TLS, set REQUESTS_CA_BUNDLE in .env "
            "to its CA certificate file (PEM); otherwise check the PC's date and time"
        ]
    )


def is_certificate_error(error: BaseException) -> bool:
    return isinstance(error, requests.exceptions.SSLError)
