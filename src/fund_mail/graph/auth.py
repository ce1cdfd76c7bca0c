"""App-only tokens for Graph through msal's client-credentials flow."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import msal
import requests
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from msal.exceptions import MsalServiceError

from fund_mail.config import Config
from fund_mail.errors import AuthError, RunFailed
from fund_mail.graph.discovery import CACHE_NAME, CachedDiscovery
from fund_mail.graph.retry import (
    TOKEN_ANSWERS,
    certificate_problem,
    graph_policy,
    https_session,
    is_certificate_error,
    retried_by_urllib3,
)
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


# Errors that say "try later", not "fix the configuration"; retried by TOKEN_ANSWERS.
TRANSIENT_ERRORS = {"temporarily_unavailable", "server_error", "request_timeout"}
RENEW_AHEAD = 300.0  # seconds before expiry at which a cached bearer token is renewed


def is_transient(result: dict) -> bool:
    error = result.get("error")
    return not isinstance(error, str) or error in TRANSIENT_ERRORS


class _TryLater(Exception):
    """A token answer that says "try later"; carries msal's result dict."""

    def __init__(self, result: dict) -> None:
        super().__init__(result.get("error"))
        self.result = result


def _answer(error: BaseException) -> dict:
    """msal's result dict carried by a _TryLater."""
    return error.result if isinstance(error, _TryLater) else {}


def _sign_in_session(config: Config) -> requests.Session:
    """msal's HTTP client: the same retry policy as Graph's, the token POST included."""
    return https_session(
        graph_policy(config.retry_backoff), config.ca_bundle, methods=frozenset({"GET", "POST"})
    )


class TokenProvider:
    """Hands out bearer tokens; msal serves them from its in-memory cache until near expiry."""

    def __init__(self, config: Config, scope: str | None = None) -> None:
        # Graph by default; the IMAP source asks the same app for an Exchange IMAP token.
        self.scope = scope or f"{config.graph_url}/.default"
        host = urlparse(config.authority_host).hostname or ""
        self.authority = f"{config.authority_host}/{config.tenant_id}"
        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None  # (token, renew after), monotonic
        self._discovery = CachedDiscovery(_sign_in_session(config), config.data_dir / CACHE_NAME)

        def sign_in_app() -> msal.ConfidentialClientApplication:
            try:
                return msal.ConfidentialClientApplication(
                    config.client_id,
                    client_credential=_client_credential(config),
                    authority=self.authority,
                    # Instance discovery asks login.microsoftonline.com about the host; a local
                    # or sovereign authority outside Microsoft's list must skip it.
                    instance_discovery=host in WELL_KNOWN_AUTHORITY_HOSTS,
                    http_client=self._discovery,
                    timeout=config.http_timeout,
                )
            except ValueError as e:
                # msal raises ValueError when OIDC discovery is refused (unknown tenant).
                raise AuthError(
                    f"The sign-in endpoint {self.authority} refused discovery: {e}. "
                    "Check TENANT_ID and AUTHORITY_HOST."
                ) from e
            except requests.exceptions.SSLError as e:
                raise certificate_problem(self.authority, e) from e

        # A discovery answer cut off mid-body is tried again, as a Graph request would be.
        self._app = graph_policy(config.retry_backoff).call(
            sign_in_app,
            requests.RequestException,
            f"Discovery at {self.authority}",
            give_up=retried_by_urllib3,
            failed=lambda e, tries: RunFailed(
                f"Could not reach the sign-in endpoint {self.authority}: "
                f"{type(e).__name__}. Check the network, proxy and REQUESTS_CA_BUNDLE; "
                "the next run tries again."
            ),
        )

    def bearer(self, force_refresh: bool = False) -> str:
        """The token as a plain string, renewed RENEW_AHEAD seconds before it expires.

        Every Graph request needs it; asking msal each time costs a cache search under a lock.
        """
        cached = self._cached
        if not force_refresh and cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        return self.token(force_refresh)

    def _remember(self, result: dict) -> None:
        try:
            lifetime = float(result.get("expires_in", 0))
        except (TypeError, ValueError):
            lifetime = 0.0
        self._cached = (result["access_token"], time.monotonic() + lifetime - RENEW_AHEAD)

    def token(self, force_refresh: bool = False) -> str:
        with self._lock:
            if force_refresh:
                self._app.remove_tokens_for_client()
            try:
                result = TOKEN_ANSWERS.call(
                    self._acquire,
                    _TryLater,
                    "The token request",
                    failed=lambda e, tries: RunFailed(
                        f"The sign-in endpoint is temporarily unavailable "
                        f"({_answer(e).get('error')}: {_answer(e).get('error_description')}); "
                        "nothing was changed and the next run tries again."
                    ),
                )
            except Exception:
                # A kept discovery answer may name an endpoint that has moved: never reuse it
                # after a failed sign-in, whatever the failure.
                self._discovery.forget()
                raise
        if "access_token" not in result:
            self._discovery.forget()  # the next run asks for the endpoints again
            raise AuthError(describe_token_error(result))
        REDACTOR.add(result["access_token"])
        self._remember(result)
        log.debug("token from %s", result.get("token_source", "identity_provider"))
        return result["access_token"]

    def _acquire(self) -> dict:
        """One token request; _TryLater for an answer that says "try later"."""
        try:
            result = self._app.acquire_token_for_client(scopes=[self.scope]) or {}
        except requests.RequestException as e:
            if is_certificate_error(e):
                raise certificate_problem(self.authority, e) from e
            # urllib3 retried the connection; a body cut off mid-way ends up here.
            result = {"error": "request_timeout", "error_description": type(e).__name__}
        except MsalServiceError as e:
            # msal raises instead of returning a dict for some 5xx answers.
            result = {"error": "server_error", "error_description": str(e)}
        if "access_token" not in result and is_transient(result):
            raise _TryLater(result)
        return result


class Tokens(Protocol):
    """What GraphClient asks for: a TokenProvider, or a TokensAhead."""

    def bearer(self, force_refresh: bool = False) -> str: ...

    def token(self, force_refresh: bool = False) -> str: ...


class TokensAhead:
    """A TokenProvider built and signed in on a thread, started as soon as a command knows it
    will need Graph, so that the discovery and token round trips overlap the rest of the
    program's start-up (importing the engine, opening the index). The first use waits for that
    thread, and raises what the sign-in raised, as the first request would have."""

    def __init__(self, config: Config) -> None:
        self._provider: TokenProvider | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._sign_in, args=(config,), name="sign-in", daemon=True
        )
        self._thread.start()

    def _sign_in(self, config: Config) -> None:
        try:
            provider = TokenProvider(config)
            provider.bearer()
            self._provider = provider
        except BaseException as e:  # noqa: BLE001 - raised again in the thread that needs it
            self._error = e

    def _ready(self) -> TokenProvider:
        self._thread.join()
        if self._provider is None:
            assert self._error is not None
            raise self._error
        return self._provider

    def bearer(self, force_refresh: bool = False) -> str:
        return self._ready().bearer(force_refresh)

    def token(self, force_refresh: bool = False) -> str:
        return self._ready().token(force_refresh)


def describe_token_error(result: dict) -> str:
    error = result.get("error", "unknown_error")
    description = (result.get("error_description") or "").split("\r\n")[0].split("\n")[0]
    hint = next((h for code, h in AADSTS_HINTS.items() if code in description), None)
    if hint is None:
        hint = "Check TENANT_ID, CLIENT_ID and CLIENT_SECRET in .env."
    return f"Sign-in failed ({error}): {description} Fix: {hint}"
