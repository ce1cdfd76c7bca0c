"""App-only tokens for Graph through msal's client-credentials flow."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import msal
import requests
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from requests.adapters import HTTPAdapter

from fund_mail.config import Config
from fund_mail.errors import AuthError, RunFailed
from fund_mail.graph.retry import build_retry
from fund_mail.logs import REDACTOR

log = logging.getLogger(__name__)

# AADSTS codes an operator can act on, and what to do about each.
AADSTS_HINTS = {
    "AADSTS7000215": "CLIENT_SECRET is wrong: copy the secret's Value (not its ID) from the app"
    " registration's Certificates & secrets page.",
    "AADSTS7000222": "CLIENT_SECRET has expired: create a new client secret and put it in .env.",
    "AADSTS700016": "CLIENT_ID is not known in this tenant: check CLIENT_ID and TENANT_ID.",
    "AADSTS90002": "TENANT_ID is not known: check TENANT_ID.",
    "AADSTS700027": "The certificate does not match the one uploaded to the app registration.",
    "AADSTS1002012": "The scope is wrong: GRAPH_URL must be the Graph endpoint of your cloud.",
}


def _client_credential(config: Config) -> str | dict:
    if not config.client_cert_path:
        return config.client_secret
    path = Path(config.client_cert_path)
    if path.suffix.lower() in (".pfx", ".p12"):
        return {"private_key_pfx_path": str(path), "passphrase": config.client_cert_password}
    # A PEM file holding the private key and the certificate: msal needs the thumbprint.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    pem = path.read_bytes()
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise AuthError(
            f"CLIENT_CERT_PATH {path} has no PEM certificate next to the key; "
            "use a .pfx file or a PEM file holding both."
        ) from e
    return {
        "private_key": pem.decode("ascii"),
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),  # noqa: S324 - msal's format
        "passphrase": config.client_cert_password or None,
    }


def certificate_expiry(path: Path, password: str = "") -> datetime:
    """When the sign-in certificate (.pfx/.p12, or PEM) stops being valid, in UTC."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import pkcs12

    data = path.read_bytes()
    if path.suffix.lower() in (".pfx", ".p12"):
        cert = pkcs12.load_key_and_certificates(data, password.encode() or None)[1]
        if cert is None:
            raise ValueError(f"{path} holds no certificate")
    else:
        cert = x509.load_pem_x509_certificate(data)
    return cert.not_valid_after_utc


# Errors that say "try later", not "fix the configuration". msal replays a 429/5xx answer from
# its cache for the Retry-After period (5 s when the header is missing or fractional), so a
# retry waits a little longer than that.
TRANSIENT_ERRORS = {"temporarily_unavailable", "server_error", "request_timeout"}
TRANSIENT_RETRIES = 2
THROTTLE_WAIT = 5.5


def is_transient(result: dict) -> bool:
    error = result.get("error")
    return not isinstance(error, str) or error in TRANSIENT_ERRORS


def _sign_in_session(backoff: float) -> requests.Session:
    """msal's HTTP client: the same retry policy as Graph's, the token POST included."""
    session = requests.Session()
    retry = build_retry(backoff, methods=frozenset({"GET", "POST"}))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


class TokenProvider:
    """Hands out bearer tokens; msal serves them from its in-memory cache until near expiry."""

    def __init__(self, config: Config) -> None:
        self.scope = f"{config.graph_url}/.default"
        host = urlparse(config.authority_host).hostname or ""
        self.authority = f"{config.authority_host}/{config.tenant_id}"
        self._lock = threading.Lock()
        self._backoff = config.retry_backoff
        for attempt in range(TRANSIENT_RETRIES + 1):
            try:
                self._app = msal.ConfidentialClientApplication(
                    config.client_id,
                    client_credential=_client_credential(config),
                    authority=self.authority,
                    # Instance discovery asks login.microsoftonline.com about the host; a local
                    # or sovereign authority outside Microsoft's list must skip it.
                    instance_discovery=host in WELL_KNOWN_AUTHORITY_HOSTS,
                    http_client=_sign_in_session(config.retry_backoff),
                    timeout=config.http_timeout,
                )
                return
            except ValueError as e:
                # msal raises ValueError when OIDC discovery is refused (unknown tenant).
                raise AuthError(
                    f"The sign-in endpoint {self.authority} refused discovery: {e}. "
                    "Check TENANT_ID and AUTHORITY_HOST."
                ) from e
            except requests.RequestException as e:
                if attempt == TRANSIENT_RETRIES:
                    raise RunFailed(
                        f"Could not reach the sign-in endpoint {self.authority}: "
                        f"{type(e).__name__}. Check the network, proxy and REQUESTS_CA_BUNDLE; "
                        "the next run tries again."
                    ) from e
                self._pause(type(e).__name__)

    def _pause(self, why: str) -> None:
        delay = max(self._backoff, 0.01) * 2
        log.warning("The sign-in endpoint failed (%s); retrying in %.1fs", why, delay)
        time.sleep(delay)

    def token(self, force_refresh: bool = False) -> str:
        with self._lock:
            if force_refresh:
                self._app.remove_tokens_for_client()
            for attempt in range(TRANSIENT_RETRIES + 1):
                try:
                    result = self._app.acquire_token_for_client(scopes=[self.scope])
                except requests.RequestException as e:
                    # urllib3 retried the connection; a body cut off mid-way ends up here.
                    result = {"error": "request_timeout", "error_description": type(e).__name__}
                except msal.exceptions.MsalServiceError as e:
                    # msal raises instead of returning a dict for some 5xx answers.
                    result = {"error": "server_error", "error_description": str(e)}
                if "access_token" in result or not is_transient(result):
                    break
                if attempt < TRANSIENT_RETRIES:
                    log.warning(
                        "The sign-in endpoint is busy (%s); retrying in %.1fs",
                        result.get("error"),
                        THROTTLE_WAIT,
                    )
                    time.sleep(THROTTLE_WAIT)
        if "access_token" not in result:
            if is_transient(result):
                raise RunFailed(
                    f"The sign-in endpoint is temporarily unavailable ({result.get('error')}: "
                    f"{result.get('error_description')}); nothing was changed and the next run "
                    "tries again."
                )
            raise AuthError(describe_token_error(result))
        REDACTOR.add(result["access_token"])
        log.debug("token from %s", result.get("token_source", "identity_provider"))
        return result["access_token"]


def describe_token_error(result: dict) -> str:
    error = result.get("error", "unknown_error")
    description = (result.get("error_description") or "").split("\r\n")[0].split("\n")[0]
    hint = next((h for code, h in AADSTS_HINTS.items() if code in description), None)
    if hint is None:
        hint = "Check TENANT_ID, CLIENT_ID and CLIENT_SECRET in .env."
    return f"Sign-in failed ({error}): {description} Fix: {hint}"
