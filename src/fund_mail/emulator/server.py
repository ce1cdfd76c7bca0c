"""An HTTPS emulator of the Entra token endpoint and Graph's mail endpoints, on 127.0.0.1.

It mirrors the behaviour listed in GRAPH_FACTS.md: OData paging and filters with Graph's own
restrictions, ImmutableId, the three attachment kinds, throttling, and token expiry. Tests add
faults and read the request log to prove retries, Retry-After compliance and concurrency.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_plus, urlencode, urlsplit

from fund_mail.emulator.mailbox import (
    ATTACHMENT_PROPERTIES,
    MESSAGE_PROPERTIES,
    REFERENCE,
    Folder,
    Mailbox,
    Message,
)
from fund_mail.emulator.odata import (
    ODataError,
    check_efficient,
    parse_expand,
    parse_filter,
    parse_orderby,
    parse_select,
)
from fund_mail.emulator.tls import TlsFiles, make_tls_files

DEFAULT_TENANT = "11111111-2222-3333-4444-555555555555"
DEFAULT_CLIENT = "66666666-7777-8888-9999-000000000000"
DEFAULT_SECRET = "emulator-secret-Value~0123456789"


@dataclass
class Fault:
    """One programmed failure. target: list, attachment, message, folder, token or any."""

    kind: str  # throttle | unavailable | gateway_timeout | reset | slow | expire_token
    target: str = "any"
    times: int | None = 1  # None: every matching request, forever
    retry_after: str | None = None
    delay: float = 0.0
    path_contains: str = ""
    query_contains: str = ""  # matched against the decoded query string
    fired: int = 0

    def matches(self, target: str, path: str, query: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.target not in ("any", target):
            return False
        return self.path_contains in path and self.query_contains in query


@dataclass
class MailboxChange:
    """A test hook: change the mailbox when the nth matching request arrives, before it is
    answered, as a user or an inbox rule would between two pages."""

    action: Callable[[Mailbox], None]
    target: str = "list"
    nth: int = 1
    query_contains: str = ""  # matched against the decoded query string
    matched: int = 0
    fired: threading.Event = field(default_factory=threading.Event)


@dataclass
class RequestRecord:
    seq: int
    method: str
    path: str
    query: dict[str, str]
    target: str
    started: float  # time.monotonic() on arrival
    finished: float = 0.0
    status: int = 0
    retry_after: str | None = None
    in_flight: int = 0
    fault: str = ""
    mailbox: str = ""  # the /users/{address} segment, lower-cased
    mailbox_in_flight: int = 0
    work: float = 0.0  # seconds the emulator spent before its answer was ready
    client_port: int = 0  # the client's end of the connection: one port per connection


@dataclass
class Registration:
    tenant_id: str = DEFAULT_TENANT
    client_id: str = DEFAULT_CLIENT
    client_secret: str = DEFAULT_SECRET
    # base64url SHA-1 (x5t) or SHA-256 (x5t#S256) thumbprints of the uploaded certificates
    certificate_thumbprints: set[str] = field(default_factory=set)


class GraphEmulator:
    """Start with `with GraphEmulator() as graph:`; graph.url is the base for both services."""

    def __init__(
        self,
        mailbox_address: str = "fund@example.com",
        token_lifetime: int = 3599,
        tls_dir: Path | None = None,
    ) -> None:
        self.registration = Registration()
        self.mailbox = Mailbox(mailbox_address)
        # Graph serves every mailbox of the tenant at /users/{address}; add_mailbox adds more.
        self.mailboxes: dict[str, Mailbox] = {mailbox_address.lower(): self.mailbox}
        # Mailboxes outside the app's ApplicationAccessPolicy / RBAC scope: 403 ErrorAccessDenied.
        self.denied_mailboxes: set[str] = set()
        self.token_lifetime = token_lifetime
        self.faults: list[Fault] = []
        self.changes: list[MailboxChange] = []
        self.log: list[RequestRecord] = []
        self.latency = 0.0
        self.max_page: int | None = None  # pages shorter than $top while more follow
        self.list_reference_attachments = True
        self.deny_access = False
        self.allow_send = True  # the app holds Mail.Send
        self.sent_mail: list[dict] = []  # what sendMail accepted, oldest first
        self.concurrency_limit = 4
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        # The concurrency limit is Graph's per app and mailbox, so in-flight counts are too.
        self._in_flight_by_mailbox: dict[str, int] = {}
        self.max_in_flight_by_mailbox: dict[str, int] = {}
        self._tmp = None
        if tls_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fm-emulator-")
            tls_dir = Path(self._tmp.name)
        self.tls: TlsFiles = make_tls_files(tls_dir)
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> GraphEmulator:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.server_cert, self.tls.server_key)
        self._server = _TlsServer(("127.0.0.1", 0), _Handler, context, self)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(
            target=self._server.serve_forever, name="graph-emulator", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> GraphEmulator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- test controls ---------------------------------------------------------------------
    def add_fault(self, kind: str, target: str = "any", times: int | None = 1, **kw) -> Fault:
        fault = Fault(kind, target, times, **kw)
        with self._lock:
            self.faults.append(fault)
        return fault

    def on_request(
        self,
        action: Callable[[Mailbox], None],
        target: str = "list",
        nth: int = 1,
        query_contains: str = "",
    ) -> MailboxChange:
        """Run action(mailbox) when the nth request for target arrives (delete, move, add)."""
        change = MailboxChange(action, target, nth, query_contains)
        with self._lock:
            self.changes.append(change)
        return change

    def _apply_changes(self, target: str, query: str) -> None:
        due = []
        with self._lock:
            for change in self.changes:
                if change.fired.is_set() or change.target not in ("any", target):
                    continue
                if change.query_contains not in query:
                    continue
                change.matched += 1
                if change.matched == change.nth:
                    due.append(change)
        for change in due:
            change.action(self.mailbox)
            change.fired.set()

    def add_mailbox(self, address: str) -> Mailbox:
        """Another mailbox in the tenant, served at /users/{address} like the first."""
        with self._lock:
            return self.mailboxes.setdefault(address.lower(), Mailbox(address))

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def expire_tokens(self) -> None:
        """Every token issued so far stops working, as if its lifetime had run out."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def prerender(
        self, select: str, expand: str | None = None, body_type: str = "html", immutable=True
    ) -> None:
        """Render every message for list requests of this shape ahead of time, as a real
        service answers from its store: a benchmark then times the client, not the emulator's
        first rendering. The answers are the same with or without it."""
        fields = parse_select(select, MESSAGE_PROPERTIES, "message")
        expanded = parse_expand(expand, ATTACHMENT_PROPERTIES) if expand else None
        for message in self.mailbox.visible():
            message.render_json(
                immutable, fields, body_type, expanded, self.list_reference_attachments
            )

    def records(self, target: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.log if target is None or r.target == target]

    def reset_log(self) -> None:
        with self._lock:
            self.log.clear()
            self.max_in_flight = 0
            self.max_in_flight_by_mailbox.clear()

    def env_values(self, data_dir: Path, **overrides: str) -> dict[str, str]:
        """The .env keys that point fund_mail at this emulator."""
        values = {
            "EMAIL_ID": self.mailbox.address,
            "TENANT_ID": self.registration.tenant_id,
            "CLIENT_ID": self.registration.client_id,
            "CLIENT_SECRET": self.registration.client_secret,
            "DATA_DIR": str(data_dir),
            "LOG_DIR": str(data_dir / "logs"),
            "GRAPH_URL": self.url,
            "AUTHORITY_HOST": self.url,
            "HOST": "",
            # The daily self-audit fires by the clock; runs against the emulator switch it on
            # explicitly, so that their requests never depend on the time of day.
            "AUDIT_DAYS": "0",
        }
        values.update(overrides)
        return values

    def write_env(self, path: Path, data_dir: Path, **overrides: str) -> Path:
        lines = [f"{k}={v}" for k, v in self.env_values(data_dir, **overrides).items()]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    # -- used by the handler ---------------------------------------------------------------
    def _begin(
        self,
        method: str,
        path: str,
        query: dict,
        target: str,
        mailbox: str = "",
        arrived: float | None = None,
        client_port: int = 0,
    ) -> RequestRecord:
        with self._lock:
            counted = target not in ("token", "discovery")
            if counted:
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
                busy = self._in_flight_by_mailbox.get(mailbox, 0) + 1
                self._in_flight_by_mailbox[mailbox] = busy
                most = self.max_in_flight_by_mailbox.get(mailbox, 0)
                self.max_in_flight_by_mailbox[mailbox] = max(most, busy)
            record = RequestRecord(
                len(self.log) + 1,
                method,
                path,
                query,
                target,
                time.monotonic() if arrived is None else arrived,
                in_flight=self._in_flight if counted else 0,
                mailbox=mailbox,
                mailbox_in_flight=self._in_flight_by_mailbox.get(mailbox, 0) if counted else 0,
                client_port=client_port,
            )
            self.log.append(record)
            return record

    def _end(self, record: RequestRecord, status: int, retry_after: str | None) -> None:
        """Close a record; called just before the last bytes go out, so that a client which
        reacts to the response always finds its request finished and no longer in flight."""
        with self._lock:
            if record.finished:
                return
            if record.target not in ("token", "discovery"):
                self._in_flight -= 1
                self._in_flight_by_mailbox[record.mailbox] -= 1
            record.finished = time.monotonic()
            record.status = status
            record.retry_after = retry_after

    def _take_fault(self, target: str, path: str, query: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(target, path, query):
                    fault.fired += 1
                    return fault
        return None

    def _issue_token(self) -> str:
        token = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_lifetime
        return token

    def _token_valid(self, token: str) -> bool:
        with self._lock:
            return self._tokens.get(token, 0.0) > time.monotonic()


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, context: ssl.SSLContext, emulator: GraphEmulator):
        super().__init__(address, handler)
        self.context = context
        self.emulator = emulator

    def get_request(self):
        sock, address = super().get_request()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm
        # and the client's delayed ACK would add 40 ms to every response.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The handshake happens in the handler's thread, so one slow client blocks no other.
        return self.context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), address


def _aad_error(status: int, error: str, code: int, description: str) -> tuple[int, dict]:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\n"
        f"Correlation ID: {correlation}\r\nTimestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TlsServer  # pyright: ignore[reportIncompatibleVariableOverride] - ours is TLS

    def setup(self) -> None:
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError):
            self.request.close()
            raise
        super().setup()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass  # the request log replaces stderr chatter

    def parse_request(self) -> bool:
        # Called as soon as the request line is read: the request has arrived. Parsing its
        # headers is the emulator's own work, and falls inside the latency like the rest of it.
        self._arrived = time.monotonic()
        return super().parse_request()

    @property
    def emulator(self) -> GraphEmulator:
        return self.server.emulator

    # -- plumbing --------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        segments = [unquote(s) for s in split.path.strip("/").split("/")]
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        target = _classify(segments)
        # Read the body first, so that an early answer (a fault) leaves the connection in sync.
        self._body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        mailbox = (
            segments[2].lower() if segments[:2] == ["v1.0", "users"] and len(segments) > 2 else ""
        )
        record = self.emulator._begin(
            method, split.path, query, target, mailbox, self._arrived, self.client_address[1]
        )
        self._record, self._status, self._retry_after = record, 0, None
        self._respond_at = record.started + self.emulator.latency
        try:
            self.emulator._apply_changes(target, unquote_plus(split.query))
            fault = self.emulator._take_fault(
                target, unquote(split.path), unquote_plus(split.query)
            )
            if fault is not None:
                record.fault = fault.kind
                if self._apply_fault(fault):
                    return
            if (
                target not in ("token", "discovery")
                and record.mailbox_in_flight > self.emulator.concurrency_limit
            ):
                self._error(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    retry_after="1",
                )
                return
            self._route(method, segments, query, split)
        except ODataError as e:
            self._error(e.status, e.code, e.message)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        finally:
            self.emulator._end(record, self._status, self._retry_after)

    def _apply_fault(self, fault: Fault) -> bool:
        """Act out a fault; True when the response has been sent (or the connection dropped)."""
        if fault.kind == "slow":
            time.sleep(fault.delay)
            return False
        if fault.kind == "expire_token":
            self.emulator.expire_tokens()
            return False
        if self._record.target == "token" and fault.kind in (
            "throttle",
            "unavailable",
            "gateway_timeout",
        ):
            # Entra answers in its own error format, not Graph's.
            status = {"throttle": 429, "unavailable": 503, "gateway_timeout": 504}[fault.kind]
            if fault.retry_after is not None:
                self._retry_after = fault.retry_after
            code, payload = _aad_error(
                status, "temporarily_unavailable", 50196, "The server is temporarily unavailable."
            )
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._json(code, payload, headers)
            return True
        if fault.kind == "throttle":
            self._error(
                429,
                "TooManyRequests",
                "Application is over its resource limit.",
                retry_after=fault.retry_after,
            )
            return True
        if fault.kind == "unavailable":
            self._error(
                503, "ServiceUnavailable", "Service is unavailable.", retry_after=fault.retry_after
            )
            return True
        if fault.kind == "gateway_timeout":
            self._error(504, "GatewayTimeout", "The gateway did not receive a response in time.")
            return True
        if fault.kind == "reset":
            # Promise a body, send part of it, then drop the connection.
            body = json.dumps({"value": [{"id": "x" * 4000}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self._status = 200
            self._finish()
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        raise ValueError(f"unknown fault kind {fault.kind}")

    def send_response(self, code: int, message: str | None = None) -> None:
        # The injected latency is the time from arrival to the answer, the emulator's own work
        # included, as with a real service: the emulator's speed must not count as the client's.
        ready = time.monotonic()
        if not self._record.work:
            self._record.work = ready - self._record.started  # the emulator's own time
        delay = self._respond_at - ready
        if delay > 0:
            time.sleep(delay)
        super().send_response(code, message)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("request-id", str(uuid.uuid4()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self._finish()
        self.wfile.write(body)

    def _finish(self) -> None:
        self.emulator._end(self._record, self._status, self._retry_after)

    def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self._send_json_text(status, json.dumps(payload, ensure_ascii=False), headers)

    def _send_json_text(self, status: int, text: str, headers: dict[str, str] | None) -> None:
        self._send(
            status,
            text.encode("utf-8"),
            "application/json; odata.metadata=minimal; charset=utf-8",
            headers,
        )

    def _error(self, status: int, code: str, message: str, retry_after: str | None = None):
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
            self._retry_after = retry_after
        self._json(
            status,
            {
                "error": {
                    "code": code,
                    "message": message,
                    "innerError": {
                        "request-id": str(uuid.uuid4()),
                        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    },
                }
            },
            headers,
        )

    # -- routing ---------------------------------------------------------------------------
    def _route(self, method: str, segments: list[str], query: dict, split) -> None:
        registration = self.emulator.registration
        if len(segments) == 4 and segments[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            return self._openid(segments[0])
        if len(segments) == 4 and segments[1:] == ["oauth2", "v2.0", "token"] and method == "POST":
            return self._token(segments[0])
        send_mail = method == "POST" and segments[3:] == ["sendMail"]
        if (
            segments[:2] != ["v1.0", "users"]
            or len(segments) < 4
            or not (method == "GET" or send_mail)
        ):
            return self._error(400, "BadRequest", f"Unsupported request {method} {split.path}")
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not self.emulator._token_valid(auth[7:]):
            return self._error(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )
        del registration
        mailbox = self.emulator.mailboxes.get(segments[2].lower())
        if mailbox is None:
            return self._error(
                404, "ErrorInvalidUser", f"The requested user '{segments[2]}' is invalid."
            )
        if send_mail:
            return self._send_mail()
        if self.emulator.deny_access or segments[2].lower() in self.emulator.denied_mailboxes:
            return self._error(403, "ErrorAccessDenied", "Access to OData is disabled.")
        rest = segments[3:]
        prefer = self.headers.get("Prefer", "")
        immutable = 'idtype="immutableid"' in prefer.lower().replace(" ", "")
        body_type = "text" if 'body-content-type="text"' in prefer.lower() else "html"
        applied = [f'outlook.body-content-type="{body_type}"']
        if immutable:
            applied.append('IdType="ImmutableId"')
        context = _Context(
            self.emulator,
            immutable,
            body_type,
            query,
            {"Preference-Applied": ", ".join(applied)},
            mailbox,
        )
        if rest[0] == "messages":
            return self._messages_route(rest[1:], context, split)
        if rest[0] == "mailFolders":
            return self._folders_route(rest[1:], context, split)
        return self._error(400, "BadRequest", f"Unsupported resource {rest[0]}")

    def _openid(self, tenant: str) -> None:
        if tenant not in (self.emulator.registration.tenant_id, "common", "organizations"):
            return self._json(
                *_aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
            )
        base = f"{self.emulator.url}/{tenant}"
        self._json(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{self.emulator.url}/{tenant}/v2.0",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "tenant_region_scope": "AS",
            },
        )

    def _token(self, tenant: str) -> None:
        form = {k: v[0] for k, v in parse_qs(self._body.decode()).items()}
        registration = self.emulator.registration
        if tenant != registration.tenant_id:
            return self._json(
                *_aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
            )
        if form.get("grant_type") != "client_credentials":
            return self._json(
                *_aad_error(
                    400,
                    "unsupported_grant_type",
                    70003,
                    "The app requested an unsupported grant type.",
                )
            )
        if form.get("client_id") != registration.client_id:
            return self._json(
                *_aad_error(
                    400,
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{form.get('client_id')}' was not found in the "
                    f"directory '{tenant}'.",
                )
            )
        if not form.get("scope", "").endswith("/.default"):
            return self._json(
                *_aad_error(
                    400, "invalid_scope", 1002012, "The provided value for scope is not valid."
                )
            )
        if "client_assertion" in form:
            if not _assertion_thumbprints(form["client_assertion"]) & (
                registration.certificate_thumbprints
            ):
                return self._json(
                    *_aad_error(
                        401,
                        "invalid_client",
                        700027,
                        "Client assertion failed signature validation.",
                    )
                )
        elif form.get("client_secret") != registration.client_secret:
            return self._json(
                *_aad_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is "
                    f"the client secret value, not the client secret ID, for a secret added to app "
                    f"'{registration.client_id}'.",
                )
            )
        lifetime = self.emulator.token_lifetime
        self._json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": self.emulator._issue_token(),
            },
        )

    def _send_mail(self) -> None:
        """POST /users/{upn}/sendMail: 202 with no body; the message is kept in sent_mail."""
        if not self.emulator.allow_send:
            return self._error(403, "ErrorAccessDenied", "Access is denied. Check credentials.")
        try:
            message = json.loads(self._body)["message"]
            subject = message["subject"]
            body = message["body"]
            to = [r["emailAddress"]["address"] for r in message["toRecipients"]]
        except (ValueError, KeyError, TypeError):
            return self._error(400, "ErrorInvalidRequest", "The request body is not valid.")
        if not to:
            return self._error(
                400, "ErrorInvalidRecipients", "At least one recipient is not valid."
            )
        if body.get("contentType", "").lower() not in ("text", "html"):
            return self._error(400, "ErrorInvalidRequest", "Invalid body contentType.")
        self.emulator.sent_mail.append(
            {"to": to, "subject": subject, "body": body, "raw": json.loads(self._body)}
        )
        self._send(202, b"", "text/plain")

    # -- messages --------------------------------------------------------------------------
    def _messages_route(
        self, rest: list[str], ctx: _Context, split, folder: Folder | None = None
    ) -> None:
        mailbox = ctx.mailbox
        if not rest:
            return self._list_messages(ctx, split, folder)
        message = mailbox.find(rest[0])
        if message is None or not message.visible:
            return self._error(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        if len(rest) == 1:
            select = parse_select(ctx.query.get("$select"), MESSAGE_PROPERTIES, "message")
            expand = parse_expand(ctx.query.get("$expand"), ATTACHMENT_PROPERTIES)
            return self._json(
                200,
                message.render(
                    ctx.immutable,
                    select,
                    ctx.body_type,
                    expand,
                    self.emulator.list_reference_attachments,
                ),
                ctx.headers,
            )
        if rest[1:] == ["$value"]:
            return self._send(200, message.mime(), "message/rfc822")
        if rest[1] != "attachments":
            return self._error(400, "BadRequest", f"Unsupported segment {rest[1]}")
        if len(rest) == 2:
            select = parse_select(ctx.query.get("$select"), ATTACHMENT_PROPERTIES, "attachment")
            return self._json(200, {"value": [a.render(select) for a in message.attachments]})
        attachment = next((a for a in message.attachments if a.id == rest[2]), None)
        if attachment is None:
            return self._error(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        if len(rest) == 3:
            return self._json(200, attachment.render(None))
        if rest[3:] == ["$value"]:
            if attachment.kind == REFERENCE:
                return self._error(
                    405,
                    "ErrorInvalidRequest",
                    "The OData request is not supported: reference attachment.",
                )
            return self._stream(attachment)
        return self._error(400, "BadRequest", "Unsupported attachment request")

    def _stream(self, attachment) -> None:
        self._status = 200
        self.send_response(200)
        content_type = (
            "message/rfc822"
            if attachment.item
            else (attachment.content_type or "application/octet-stream")
        )
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(attachment.value_length()))
        self.end_headers()
        pending = None
        for chunk in attachment.chunks():
            if pending is not None:
                self.wfile.write(pending)
            pending = chunk
        self._finish()
        self.wfile.write(pending or b"")

    def _list_messages(self, ctx: _Context, split, folder: Folder | None) -> None:
        query = ctx.query
        select = parse_select(query.get("$select"), MESSAGE_PROPERTIES, "message")
        expand = parse_expand(query.get("$expand"), ATTACHMENT_PROPERTIES)
        order = parse_orderby(query["$orderby"]) if "$orderby" in query else []
        predicate, properties = (
            parse_filter(query["$filter"]) if "$filter" in query else (lambda m: True, [])
        )
        if order:
            check_efficient(order, properties)
        try:
            top = int(query.get("$top", "10"))
            skip = int(query.get("$skip", "0"))
        except ValueError as e:
            raise ODataError(400, "BadRequest", "$top and $skip must be integers.") from e
        if not 1 <= top <= 1000 or skip < 0:
            raise ODataError(
                400, "ErrorInvalidParameter", "The value of $top must be between 1 and 1000."
            )
        mailbox = ctx.mailbox
        with mailbox.lock:
            chosen = [
                m
                for m in mailbox.visible()
                if predicate(m) and (folder is None or m.folder_id == folder.id)
            ]
            if order:
                for prop, descending in reversed(order + [("id", False)]):
                    chosen.sort(key=lambda m, p=prop: _sort_key(m, p), reverse=descending)
            else:
                chosen.sort(key=lambda m: (m.received, m.immutable_id), reverse=True)
            size = min(top, self.emulator.max_page or top)
            page = chosen[skip : skip + size]
            value = [
                m.render_json(
                    ctx.immutable,
                    select,
                    ctx.body_type,
                    expand,
                    self.emulator.list_reference_attachments,
                )
                for m in page
            ]
            more = skip + len(page) < len(chosen)
        context = f"{self.emulator.url}/v1.0/$metadata#users('x')/messages"
        tail = ""
        if more:
            next_query = {**query, "$skip": str(skip + len(page))}
            link = f"{self.emulator.url}{split.path}?{urlencode(next_query)}"
            tail = f", {json.dumps('@odata.nextLink')}: {json.dumps(link, ensure_ascii=False)}"
        # Byte for byte json.dumps of {context, value, nextLink}, from pre-rendered messages.
        head = f"{json.dumps('@odata.context')}: {json.dumps(context, ensure_ascii=False)}"
        text = f'{{{head}, "value": [{", ".join(value)}]{tail}}}'
        self._send_json_text(200, text, ctx.headers)

    # -- folders ---------------------------------------------------------------------------
    def _folders_route(self, rest: list[str], ctx: _Context, split) -> None:
        mailbox = ctx.mailbox
        if not rest:
            return self._folder_list(mailbox.folder("msgfolderroot"), ctx)
        try:
            folder = (
                mailbox.folder(rest[0])
                if rest[0] in mailbox.folders
                or rest[0].lower() in {f.well_known for f in mailbox.folders.values()}
                else None
            )
        except KeyError:
            folder = None
        if folder is None:
            return self._error(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        if len(rest) == 1:
            return self._json(200, _select(folder.render(mailbox), ctx.query.get("$select")))
        if rest[1] == "childFolders" and len(rest) == 2:
            return self._folder_list(folder, ctx)
        if rest[1] == "messages":
            return self._messages_route(rest[2:], ctx, split, folder)
        return self._error(400, "BadRequest", "Unsupported folder request")

    def _folder_list(self, parent: Folder, ctx: _Context) -> None:
        mailbox = ctx.mailbox
        children = [f for f in mailbox.folders.values() if f.parent_id == parent.id]
        top = int(ctx.query.get("$top", "10"))
        skip = int(ctx.query.get("$skip", "0"))
        page = children[skip : skip + top]
        payload: dict[str, Any] = {
            "value": [_select(f.render(mailbox), ctx.query.get("$select")) for f in page]
        }
        if skip + len(page) < len(children):
            payload["@odata.nextLink"] = (
                f"{self.emulator.url}{urlsplit(self.path).path}?"
                f"{urlencode({**ctx.query, '$skip': str(skip + len(page))})}"
            )
        self._json(200, payload)


@dataclass
class _Context:
    emulator: GraphEmulator
    immutable: bool
    body_type: str
    query: dict[str, str]
    headers: dict[str, str]
    mailbox: Mailbox


def _classify(segments: list[str]) -> str:
    if "token" in segments[-1:]:
        return "token"
    if segments[-1:] == ["sendMail"]:
        return "sendmail"
    if ".well-known" in segments or "discovery" in segments:
        return "discovery"
    if "attachments" in segments:
        return "attachment"
    if "mailFolders" in segments and "messages" not in segments:
        return "folder"
    if segments[-1:] == ["messages"]:
        return "list"
    return "message"


def _sort_key(message: Message, prop: str):
    if prop == "receivedDateTime":
        return message.received
    if prop == "sentDateTime":
        return message.sent or message.received
    return message.immutable_id


def _select(rendered: dict, select: str | None) -> dict:
    if not select:
        return rendered
    keep = {p.strip() for p in select.split(",")} | {"id"}
    return {k: v for k, v in rendered.items() if k in keep}


def _assertion_thumbprints(assertion: str) -> set[str]:
    """The x5t / x5t#S256 (base64url SHA-1 / SHA-256 of the certificate) of a client
    assertion's JWT header. The emulator checks these, not the signature."""
    try:
        header = assertion.split(".")[0]
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, IndexError):
        return set()
    return {decoded[k].rstrip("=") for k in ("x5t", "x5t#S256") if decoded.get(k)}
