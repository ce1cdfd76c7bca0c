"""Graph's parameters for the one retry policy (fund_mail.retry), and the one way to build an
HTTPS session for Graph and the sign-in endpoint."""

from __future__ import annotations

import functools
import os
import ssl
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.exceptions import MaxRetryError
from urllib3.util.ssl_ import create_urllib3_context

from fund_mail.errors import ConfigError
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


@functools.cache
def trust_context(bundle: str) -> ssl.SSLContext:
    """The TLS context that trusts a CA bundle (a file, or a folder of certificates), built
    once per process and shared by every connection.

    requests otherwise has urllib3 build a context and load the bundle for every new
    connection: 20-25 ms each for a full bundle such as certifi's, and a backfill opens one
    connection per worker thread. The context verifies certificates and host names.
    """
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    if os.path.isdir(bundle):
        context.load_verify_locations(capath=bundle)
    else:
        context.load_verify_locations(cafile=bundle)
    return context


class SharedTrustAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections verify with trust_context instead of loading the CA
    bundle again for each one (requests' documented way to use an SSLContext of one's own)."""

    def build_connection_pool_key_attributes(self, request, verify, cert=None):  # type: ignore[override]
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        if verify is False or cert is not None:
            # No verification, or a client certificate, which urllib3 would load into the
            # shared context: such a pool keeps a context of its own (fund_mail sets neither).
            return host_params, pool_kwargs
        try:
            context = trust_context(verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH)
        except OSError:
            # A bundle that is missing or not PEM: requests reports it as it always has.
            return host_params, pool_kwargs
        pool_kwargs.pop("ca_certs", None)
        pool_kwargs.pop("ca_cert_dir", None)
        pool_kwargs["ssl_context"] = context
        return host_params, pool_kwargs

    def cert_verify(self, conn, url, verify, cert) -> None:  # type: ignore[override]
        # requests' own checks (a bundle that does not exist raises), then no bundle path on the
        # pool: urllib3 would load it into the shared context again for each connection.
        super().cert_verify(conn, url, verify, cert)
        if getattr(conn, "conn_kw", {}).get("ssl_context") is not None:
            conn.ca_certs = None
            conn.ca_cert_dir = None


def https_session(
    policy: RetryPolicy,
    ca_bundle: str = "",
    methods: frozenset[str] | None = None,
    pool: int = 10,
) -> requests.Session:
    """The one way fund_mail makes an HTTPS session: the retry policy and the CA bundle."""
    session = HttpsSession(ca_bundle)
    session.mount(
        "https://",
        SharedTrustAdapter(max_retries=policy.http_retry(methods), pool_maxsize=pool),
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
