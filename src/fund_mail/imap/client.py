"""IMAP transport: connect over TLS, sign in (XOAUTH2 or a password), list, search and fetch.

imapclient does the protocol. This module adds what fund_mail needs around it: TLS always
(port 993, or STARTTLS when IMAP_TLS=starttls), an app-only token from the same msal app as
Graph (scope IMAP_TOKEN_SCOPE), folders with their SPECIAL-USE flags, read-only selects, and
errors that name the fix.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from fund_mail.config import Config
from fund_mail.errors import AuthError, RunFailed
from fund_mail.logs import REDACTOR

log = logging.getLogger(__name__)

FETCH_CHUNK = 100  # messages per FETCH: bounded memory, few round trips
SENT = b"\\Sent"
SKIPPED_FLAGS = {b"\\Noselect", b"\\NonExistent"}
SUMMARY_ITEMS = [
    b"RFC822.SIZE",
    b"INTERNALDATE",
    b"FLAGS",
    b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)]",
]
SUMMARY_HEADERS = b"BODY[HEADER.FIELDS (MESSAGE-ID DATE)]"


@dataclass(frozen=True)
class Folder:
    name: str  # the server's name, as SELECT takes it
    path: str  # the display path stored in folder_path: "/"-separated, INBOX as "Inbox"
    is_sent: bool


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int


@dataclass(frozen=True)
class Summary:
    """What a cheap FETCH tells about a message before its body is read."""

    uid: int
    size: int
    internal_date: datetime
    is_draft: bool
    headers: bytes  # Message-ID and Date, for the fingerprint


def display_path(name: str, delimiter: str | None) -> str:
    parts = name.split(delimiter) if delimiter else [name]
    if parts[0].upper() == "INBOX":
        parts[0] = "Inbox"
    return "/".join(parts)


def ssl_context() -> ssl.SSLContext:
    """The system's trust store, or REQUESTS_CA_BUNDLE: the one CA setting for every source."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or None
    return ssl.create_default_context(cafile=bundle)


class ImapMailbox:
    """One signed-in IMAP connection to the mailbox."""

    def __init__(self, config: Config, token: str | None = None) -> None:
        self.config = config
        self._token = token
        self._client: IMAPClient | None = None

    # -- connection ------------------------------------------------------------------------
    def connect(self) -> ImapMailbox:
        config = self.config
        where = f"{config.imap_host}:{config.imap_port}"
        context = ssl_context()
        try:
            client = IMAPClient(
                config.imap_host,
                port=config.imap_port,
                ssl=config.imap_tls == "ssl",
                ssl_context=context,
                timeout=config.http_timeout,
            )
            if config.imap_tls == "starttls":
                client.starttls(context)
        except ssl.SSLError as e:
            raise RunFailed(
                f"TLS with the IMAP server {where} failed ({e.reason or e}). Check IMAP_TLS "
                "(ssl for port 993, starttls for 143) and REQUESTS_CA_BUNDLE."
            ) from e
        except (OSError, IMAPClientError) as e:
            raise RunFailed(
                f"Could not reach the IMAP server {where} ({type(e).__name__}: {e}). Check "
                "IMAP_HOST, IMAP_PORT and the network; the next run tries again."
            ) from e
        client.normalise_times = False  # INTERNALDATE with its offset, not local naive time
        try:
            self._login(client)
        except BaseException:
            client.shutdown()
            raise
        self._client = client
        return self

    def _login(self, client: IMAPClient) -> None:
        config = self.config
        try:
            if config.imap_password:
                client.login(config.imap_user, config.imap_password)
            else:
                token = self._token or self._app_token()
                REDACTOR.add(token)
                client.oauth2_login(config.imap_user, token, mech="XOAUTH2")
        except LoginError as e:
            how = "IMAP_PASSWORD" if config.imap_password else "the app's XOAUTH2 token"
            hint = (
                "check IMAP_USER and IMAP_PASSWORD"
                if config.imap_password
                else "give the app IMAP.AccessAsApp and register its service principal in "
                "Exchange with access to this mailbox (INSTALL.md)"
            )
            raise AuthError(
                f"The IMAP server refused {config.imap_user} with {how} "
                f"({REDACTOR.redact(str(e))}): {hint}."
            ) from e

    def _app_token(self) -> str:
        from fund_mail.graph.auth import TokenProvider

        return TokenProvider(self.config, scope=self.config.imap_token_scope).token()

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise RuntimeError("connect() first")
        return self._client

    def close(self) -> None:
        if self._client is None:
            return
        try:
            self._client.logout()
        except (OSError, IMAPClientError):
            self._client.shutdown()
        self._client = None

    def __enter__(self) -> ImapMailbox:
        return self if self._client else self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- folders ---------------------------------------------------------------------------
    def folders(self) -> list[Folder]:
        """Every selectable folder; Sent by its SPECIAL-USE flag (RFC 6154), not by its name."""
        listed = self._call(self.client.list_folders)
        found = []
        for flags, delimiter, name in listed:
            if SKIPPED_FLAGS & set(flags):
                continue
            sep = delimiter.decode() if isinstance(delimiter, bytes) else delimiter
            found.append(Folder(name, display_path(name, sep), SENT in flags))
        return found

    def select(self, folder: str) -> FolderStatus:
        info = self._call(self.client.select_folder, folder, readonly=True)
        return FolderStatus(int(info[b"UIDVALIDITY"]), int(info.get(b"UIDNEXT", 0)))

    # -- searching -------------------------------------------------------------------------
    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above last_uid in the selected folder (`n:*` also matches the top UID)."""
        found = self._call(self.client.search, ["UID", f"{last_uid + 1}:*"])
        return sorted(u for u in found if u > last_uid)

    def uids_between(self, since: date, before: date | None = None) -> list[int]:
        """SEARCH SINCE/BEFORE: by the server's day of INTERNALDATE, so callers add a margin."""
        criteria: list = ["SINCE", since]
        if before is not None:
            criteria += ["BEFORE", before]
        return sorted(self._call(self.client.search, criteria))

    # -- fetching --------------------------------------------------------------------------
    def summaries(self, uids: list[int]) -> Iterator[Summary]:
        """Size, INTERNALDATE, flags and the Message-ID/Date headers; expunged UIDs are absent."""
        for chunk in _chunks(uids):
            fetched = self._call(self.client.fetch, chunk, SUMMARY_ITEMS)
            for uid in chunk:
                data = fetched.get(uid)
                if data is None or b"INTERNALDATE" not in data:
                    continue
                yield Summary(
                    uid,
                    int(data[b"RFC822.SIZE"]),
                    _utc(data[b"INTERNALDATE"]),
                    b"\\Draft" in data.get(b"FLAGS", ()),
                    data.get(SUMMARY_HEADERS) or b"",
                )

    def bodies(self, uids: list[int]) -> Iterator[tuple[int, bytes]]:
        """The full RFC 822 bytes (BODY.PEEK: the \\Seen flag is left alone)."""
        for chunk in _chunks(uids):
            fetched = self._call(self.client.fetch, chunk, [b"BODY.PEEK[]"])
            for uid in chunk:
                data = fetched.get(uid)
                if data is not None and b"BODY[]" in data:
                    yield uid, data[b"BODY[]"]

    def _call(self, method, *args, **kwargs) -> Any:
        try:
            return method(*args, **kwargs)
        except (OSError, IMAPClientError) as e:
            raise RunFailed(
                f"The IMAP server {self.config.imap_host} failed ({type(e).__name__}: {e}); "
                "nothing was published from this run and the next run tries again."
            ) from e


def _chunks(uids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(uids), FETCH_CHUNK):
        yield uids[start : start + FETCH_CHUNK]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
