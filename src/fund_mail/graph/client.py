"""The Microsoft Graph mail client: raw API dicts in, raw API dicts out.

Transport policy lives here and nowhere else: timeouts, retries that honour Retry-After, at most
MAX_CONCURRENCY requests in flight, one token refresh on 401, and attachment bytes streamed to disk.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar, cast
from urllib.parse import quote, urlsplit

import requests

from fund_mail import crashpoints
from fund_mail.archive.fsutil import atomic_writer
from fund_mail.archive.rows import parse_graph_time
from fund_mail.config import Config
from fund_mail.errors import AccessDeniedError, GraphError
from fund_mail.graph.auth import Tokens
from fund_mail.graph.paging import (
    NoProgress,
    PageQuery,
    PageSeen,
    Window,
    next_query,
    per_second,
    plan_slices,
)
from fund_mail.graph.retry import (
    CUT_OFF,
    certificate_problem,
    graph_policy,
    https_session,
    retried_by_urllib3,
)

log = logging.getLogger(__name__)

MESSAGE_FIELDS = (
    "id,subject,sender,from,toRecipients,ccRecipients,receivedDateTime,body,parentFolderId,isDraft"
)
ATTACHMENT_EXPAND = "attachments($select=id,name,contentType,size,isInline)"
ID_FIELDS = "id,receivedDateTime,isDraft"  # the audit's cheap listing: no body, no attachments
CHUNK = 1024 * 1024
WORKERS_PER_SLOT = 2  # download workers per request slot (see GraphClient.pool)
# A list page of 1,000 messages with their bodies is tens of MB; beyond this something is wrong,
# and reading on would only exhaust memory.
MAX_JSON_BYTES = 512 * 1024 * 1024


T = TypeVar("T")
_END = object()


def read_ahead(pages: Iterator[T]) -> Iterator[T]:
    """Yield pages while a worker thread already fetches the next one.

    The next list page is one round trip away; fetching it while the caller downloads
    attachments and writes rows hides that round trip. Errors reach the caller unchanged, at
    the page where they happened. Stopping early waits for the one fetch still in flight.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as worker:
        upcoming = worker.submit(next, pages, _END)
        while (page := upcoming.result()) is not _END:
            upcoming = worker.submit(next, pages, _END)
            yield cast(T, page)


class ListAhead(Generic[T]):
    """Lists several sources (the days of a range) one after another on a worker thread, up to
    `depth` pages ahead of the caller, so day k+1 is listed while day k's attachments download.

    sources()[i] is read through pages(i), in order. An error ends that source only: it is
    raised by pages(i), and the worker goes on with the next source. A caller that stops
    reading a source early (its day failed) has the rest of it skipped.
    """

    def __init__(self, sources: list[Callable[[], Iterator[T]]], depth: int) -> None:
        self._arrived: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._list, args=(sources,), name="list-ahead", daemon=True
        )
        self._thread.start()

    def _list(self, sources: list[Callable[[], Iterator[T]]]) -> None:
        for number, source in enumerate(sources):
            try:
                for page in source():
                    if not _put(self._arrived, (number, page, None), self._stop):
                        return
            except Exception as e:  # noqa: BLE001 - raised where that source is read
                if not _put(self._arrived, (number, _END, e), self._stop):
                    return
                continue
            if not _put(self._arrived, (number, _END, None), self._stop):
                return

    def pages(self, number: int) -> Iterator[T]:
        while True:
            source, page, error = self._arrived.get()
            if source < number:
                continue  # the rest of a source its reader gave up on
            if error is not None:
                raise error
            if page is _END:
                return
            yield page

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _side_by_side(sources: list[Iterator[T]]) -> Iterator[T]:
    """Items of all sources as they arrive, each source drained by its own thread.

    The threads' requests still pass the client's slots, so the in-flight cap holds. The first
    error stops the others and reaches the caller; so does the caller stopping early.
    """
    arrived: queue.Queue = queue.Queue(maxsize=len(sources))
    stop = threading.Event()

    def drain(source: Iterator[T]) -> None:
        try:
            for item in source:
                if not _put(arrived, (item, None), stop):
                    return
            _put(arrived, (_END, None), stop)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            _put(arrived, (_END, e), stop)

    threads = [threading.Thread(target=drain, args=(s,), daemon=True) for s in sources]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            item, error = arrived.get()
            if error is not None:
                raise error
            if item is _END:
                running -= 1
            else:
                yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _put(into: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put item unless stop is set first; False when it was not put."""
    while not stop.is_set():
        try:
            into.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _settled(future: Future[T] | None) -> T | None:
    """The answer of a request sent ahead, once it is in; None when there was none or it
    failed. A failure is not the caller's: the request is asked again if its answer is needed."""
    if future is None:
        return None
    try:
        return future.result()
    except Exception as e:  # noqa: BLE001 - asked again where needed, and reported there
        log.debug("a request sent ahead failed and is asked again if needed: %s", e)
        return None


def _has_id(item: Any) -> bool:
    return isinstance(item, dict) and bool(item.get("id"))


def _fresh(items: list, listed: set[str]) -> list:
    """The items not listed before; an item without an id is always passed on."""
    return [m for m in items if not _has_id(m) or m["id"] not in listed]


def _received_or_none(message: dict) -> datetime | None:
    try:
        return parse_graph_time(str(message.get("receivedDateTime")))
    except ValueError:
        return None


def _settle_environment(session: requests.Session, url: str) -> None:
    """Read the proxy and CA bundle settings from the environment once, not per request.

    requests looks them up on every request when trust_env is on; every request of a session
    goes to GRAPH_URL's host (see _send), so one lookup for that URL answers them all.
    """
    from requests.utils import get_environ_proxies

    session.proxies.update(get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False


class NotDownloadable(GraphError):
    """The attachment has no bytes to fetch (a reference attachment: Graph answers 405)."""


def graph_error(response: requests.Response) -> GraphError | AccessDeniedError:
    """Turn a Graph error response into an exception with the code and message it carries."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    code = error.get("code", "")
    message = error.get("message", "") or response.reason
    request_id = (error.get("innerError") or {}).get("request-id", "")
    text = f"Graph answered {response.status_code} {code}: {message}"
    if request_id:
        text += f" (request-id {request_id})"
    if response.status_code == 403:
        return AccessDeniedError(
            f"{text}. The app may not read this mailbox: grant the Mail.Read application "
            "permission with admin consent, and include the mailbox in the app's RBAC for "
            "Applications scope or ApplicationAccessPolicy."
        )
    return GraphError(text, response.status_code, code)


def read_json(response: requests.Response, limit: int) -> dict[str, Any]:
    """A response body as a JSON object, refusing one that is huge or nested too deeply."""
    where = response.url.split("?")[0]
    too_big = GraphError(
        f"Graph's answer to {where} is over {limit // 2**20} MB: lower PAGE_SIZE in .env "
        "(e.g. PAGE_SIZE=100) and run again"
    )
    if int(response.headers.get("Content-Length") or 0) > limit:
        raise too_big
    body = bytearray()
    for chunk in response.iter_content(CHUNK):
        body += chunk
        if len(body) > limit:
            raise too_big
    try:
        data = json.loads(body)
    except RecursionError as e:
        raise GraphError(f"Graph's answer to {where} is JSON nested too deeply to read") from e
    if not isinstance(data, dict):
        raise GraphError(f"Graph's answer to {where} is not a JSON object")
    return data


class GraphClient:
    def __init__(self, config: Config, tokens: Tokens, backoff: float = 1.0) -> None:
        self.mailbox_url = f"{config.graph_url}/v1.0/users/{quote(config.email_id)}"
        graph = urlsplit(config.graph_url)
        self._origin = (graph.scheme.lower(), graph.netloc.lower())
        self.tokens = tokens
        self.timeout = (min(10.0, config.http_timeout), config.http_timeout)
        self.headers = {
            # ImmutableId keeps ids stable across folder moves; both preferences go in one header.
            "Prefer": f'IdType="ImmutableId", outlook.body-content-type="{config.body_content_type}"',
            "Accept": "application/json",
        }
        self.retry = graph_policy(backoff)
        self.ca_bundle = config.ca_bundle
        self._slots = threading.BoundedSemaphore(config.max_concurrency)
        self._session_lock = threading.Lock()
        self._shared_session: requests.Session | None = None
        # Requests are sent from several threads (read-ahead, folders, downloads), and `+= 1`
        # on a shared int is a read and a write that two threads can interleave.
        self._count_lock = threading.Lock()
        self._requests_made = 0
        self._pool: ThreadPoolExecutor | None = None
        self._finisher: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.max_concurrency = config.max_concurrency

    def pool(self) -> ThreadPoolExecutor:
        """The process's download workers, fed by one queue for the whole run.

        One pool across pages and days, so it never drains and refills at a boundary. It has
        twice as many workers as request slots: the cap on requests in flight is the slots
        semaphore, which every request passes, and a worker that opens its partial file or
        hands its commit over is not holding a slot that another could use meanwhile.
        """
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    WORKERS_PER_SLOT * self.max_concurrency, thread_name_prefix="attach"
                )
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            for pool in (self._pool, self._finisher):
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
            self._pool = self._finisher = None
        with self._session_lock:
            if self._shared_session is not None:
                self._shared_session.close()
            self._shared_session = None

    @property
    def requests_made(self) -> int:
        """Requests handed to the transport so far (urllib3's own retries not counted)."""
        return self._requests_made

    def _count_request(self) -> None:
        with self._count_lock:
            self._requests_made += 1

    # -- transport -------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        """The process's one HTTPS session, whose keep-alive connections serve every thread.

        Only its transport adapter is used (see _get), and urllib3's connection pool behind it
        is thread-safe. A thread that starts later (a time slice, a download worker, the next
        day's listing) takes a warm connection instead of opening one with a TLS handshake of
        its own, which costs CPU that the writer of the rows is waiting for. The pool keeps as
        many connections as requests may be in flight (the slots), and a few spare for a
        streamed answer whose connection goes back just after its slot.
        """
        with self._session_lock:
            if self._shared_session is None:
                session = https_session(
                    self.retry, self.ca_bundle, pool=WORKERS_PER_SLOT * self.max_concurrency
                )
                session.headers.update(self.headers)
                _settle_environment(session, self.mailbox_url)
                self._shared_session = session
            return self._shared_session

    def _get(self, url: str, params: dict | None, token: str, stream: bool) -> requests.Response:
        """One GET straight through the session's transport adapter (urllib3 and the retry
        policy), without Session.request.

        Session.request merges the environment's settings, cookies and hooks and follows
        redirects on every call. A Graph GET needs none of it: the environment is settled once
        per session, Graph sets no cookies, and a redirect would take the token elsewhere. That
        work was most of requests' own time per download, and a download's slot waits for it.
        """
        session = self._session()
        request = requests.Request(
            "GET",
            url,
            params=params,
            headers={**session.headers, "Authorization": f"Bearer {token}"},
        ).prepare()
        return session.get_adapter(url).send(
            request,
            stream=stream,
            timeout=self.timeout,
            verify=self.ca_bundle or session.verify,
            proxies=session.proxies,
        )

    def _send(self, url: str, params: dict | None, stream: bool) -> requests.Response:
        """One GET (urllib3 retries inside); a 401 gets one retry with a fresh token."""
        target = urlsplit(url)
        if (
            target.scheme.lower(),
            target.netloc.lower(),
        ) != self._origin or target.scheme != "https":
            # The bearer token goes to GRAPH_URL's host over https and nowhere else.
            raise GraphError(
                f"Refusing to send a request to {target.scheme}://{target.netloc}: only "
                f"{self._origin[0]}://{self._origin[1]} (GRAPH_URL) is trusted with the token."
            )
        for attempt in (1, 2):
            token = self.tokens.bearer(force_refresh=attempt == 2)
            self._count_request()
            response = self._get(url, params, token, stream)
            if response.status_code != 401:
                return response
            response.close()
            log.info("Graph answered 401; renewing the token and trying once more")
        return response

    def _with_body_retries(self, action: Callable[[], T], what: str) -> T:
        """Retry a whole request when the body is cut off (urllib3 only retries before it)."""

        def guarded() -> T:
            try:
                return action()
            except requests.exceptions.SSLError as e:
                # A TLS trust problem does not heal by retrying; it is this PC's, not Graph's.
                raise certificate_problem(self.mailbox_url, e) from e

        return self.retry.call(
            guarded,
            CUT_OFF,
            what,
            give_up=retried_by_urllib3,
            failed=lambda e, tries: GraphError(
                f"{what} failed after {tries} attempts: {type(e).__name__}: {e}"
            ),
        )

    def get_json(self, url: str, params: dict | None = None) -> dict[str, Any]:
        def action() -> dict[str, Any]:
            with self._slots:
                response = self._send(url, params, stream=True)
                with response:
                    if response.status_code != 200:
                        raise graph_error(response)
                    return read_json(response, MAX_JSON_BYTES)

        return self._with_body_retries(action, f"GET {url.split('?')[0]}")

    def send_mail(self, to: list[str], subject: str, body: str) -> None:
        """POST /sendMail from the archived mailbox (app-only; needs Mail.Send). Graph answers
        202 with no body. Not retried on 5xx, so that an alert is not sent twice."""
        payload = {
            "message": {
                "subject": subject,
                "body": {"contentType": "text", "content": body},
                "toRecipients": [{"emailAddress": {"address": a}} for a in to],
            },
            "saveToSentItems": False,
        }
        for attempt in (1, 2):
            token = self.tokens.token(force_refresh=attempt == 2)
            self._count_request()
            with self._slots:
                response = self._session().post(
                    f"{self.mailbox_url}/sendMail",
                    json=payload,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=self.timeout,
                )
            if response.status_code != 401:
                break
        if response.status_code != 202:
            error = graph_error(response)
            if response.status_code == 403:
                raise AccessDeniedError(
                    f"{error.args[0].split('. The app')[0]}. The app may not send as this "
                    "mailbox: grant the Mail.Send application permission with admin consent, "
                    "in the same RBAC for Applications scope as Mail.Read."
                )
            raise error

    # -- mail ------------------------------------------------------------------------------
    def fetch_message_pages(
        self, window: Window, page_size: int, fields: str = MESSAGE_FIELDS, expand: bool = True
    ) -> Iterator[list[dict]]:
        """Messages received in window, newest first, one list of raw dicts per page.

        Offset-free (graph/paging.py): each follow-up page is asked for by time, and ids already
        listed are dropped, so deleting or moving listed messages mid-run cannot hide others.
        """
        return self._pages_from(PageQuery(window), set(), page_size, fields, expand)

    def fetch_sliced_pages(
        self, window: Window, page_size: int, fields: str = MESSAGE_FIELDS, expand: bool = True
    ) -> Iterator[list[dict]]:
        """The messages of fetch_message_pages, listed faster when there is more than a page.

        A cheap first look reads both ends: the newest page, and the oldest page, which ends
        the listing for up to two pages of mail. Their time spans say how much lies between,
        which is then listed as 1-6 time slices side by side (paging.plan_slices: 3-8 slices of
        the window in all), each paged offset-free. Pages come in the order they arrive, not
        newest first; an id read twice (at a boundary second) is yielded once.

        A closed window (a day of a backfill or an audit) asks for both ends at once, which
        saves a round trip on a big day and costs a day of one page one request. An open window
        (fund_mail_once, every 5 minutes and mostly idle) asks for the oldest page only when
        the newest page says more follow.
        """
        newest_query = PageQuery(window)
        oldest_ahead = None
        if window.end is not None:
            worker = ThreadPoolExecutor(1, thread_name_prefix="list-oldest")
            oldest_ahead = worker.submit(
                self._list_page, PageQuery(window), page_size, fields, expand, "asc"
            )
            worker.shutdown(wait=False)
        try:
            messages, newest = self._list_page(newest_query, page_size, fields, expand)
        except BaseException:
            _settled(oldest_ahead)  # no request outlives the listing
            raise
        try:
            yield messages  # its rows are written while the oldest page is still on its way
        finally:
            oldest_answer = _settled(oldest_ahead)
        if not newest.more:
            return
        listed = set(newest.ids)
        try:
            following = next_query(newest_query, newest, set())
            walks_a_second = following is not None and following.second is not None
        except NoProgress:
            walks_a_second = True
        if walks_a_second:
            # One second fills (most of) the page: slices cannot split a second, and the
            # pager's one-second walk lists it with the fewest requests.
            yield from self._pages_from(newest_query, listed, page_size, fields, expand, newest)
            return
        # [window.start, the newest page's oldest second], that second included.
        rest = Window(window.start, min(newest.times) + timedelta(seconds=1))
        if oldest_answer is None:
            messages, oldest = self._list_page(PageQuery(rest), page_size, fields, expand, "asc")
        else:
            # Asked for over the whole window: ids the newest page listed are dropped below.
            messages, oldest = oldest_answer
        fresh = _fresh(messages, listed)
        listed.update(oldest.ids)
        if fresh:
            yield fresh
        if not oldest.more:
            return
        # Between the two ends: from the oldest page's newest second (again, as it may go on).
        # When the two pages overlap, every message lies in one or the other: the newest page
        # holds all that came after its oldest second, the oldest page all before its newest.
        middle = Window(max(oldest.times, default=rest.start), rest.end)
        if middle.end is not None and middle.start >= middle.end:
            return
        density = (per_second(newest.times) + per_second(oldest.times)) / 2
        slices = plan_slices(middle, density, page_size)
        for page in _side_by_side(
            [self.fetch_message_pages(s, page_size, fields, expand) for s in slices]
        ):
            fresh = _fresh(page, listed)
            listed.update(m["id"] for m in fresh if _has_id(m))
            if fresh:
                yield fresh  # an empty slice (uneven mail) has nothing to report

    def _list_page(
        self, query: PageQuery, page_size: int, fields: str, expand: bool, order: str = "desc"
    ) -> tuple[list, PageSeen]:
        """One list request: every item it returned (with or without an id), and what the
        pager needs to know about it."""
        params = {
            "$filter": query.filter(),
            "$orderby": f"receivedDateTime {order}",
            "$select": fields,
            "$top": str(page_size),
        }
        if expand:
            params["$expand"] = ATTACHMENT_EXPAND
        if query.skip:
            params["$skip"] = str(query.skip)
        page = self.get_json(f"{self.mailbox_url}/messages", params)
        items = page.get("value") or []
        # Items without an id cannot be paged by, nor archived: they are passed on for the
        # archiver to set aside (quarantine), never dropped silently.
        messages = [m for m in items if _has_id(m)]
        seen = PageSeen(
            [m["id"] for m in messages],
            [t for t in map(_received_or_none, messages) if t is not None],
            bool(page.get("@odata.nextLink")),
        )
        return items, seen

    def _pages_from(
        self,
        query: PageQuery | None,
        listed: set[str],
        page_size: int,
        fields: str,
        expand: bool,
        answered: PageSeen | None = None,
    ) -> Iterator[list[dict]]:
        """Page on from query; `answered` is what query already returned (then it is not
        asked again), and `listed` the ids yielded so far."""
        while query is not None:
            if answered is None:
                messages, seen = self._list_page(query, page_size, fields, expand)
                known_before = set(listed)
            else:
                messages, seen = [], answered
                known_before = listed - set(answered.ids)
            try:
                following = next_query(query, seen, known_before)
            except NoProgress as e:
                raise GraphError(f"Listing messages stopped: {e}") from e
            if answered is None:
                fresh = _fresh(messages, listed)
                listed.update(seen.ids)
                yield fresh
            answered = None
            query = following

    def fetch_message(self, message_id: str) -> dict[str, Any]:
        """One message with the fields and attachment metadata a list page carries."""
        return self.get_json(
            f"{self.mailbox_url}/messages/{quote(message_id, safe='')}",
            {"$select": MESSAGE_FIELDS, "$expand": ATTACHMENT_EXPAND},
        )

    def fetch_newest(self, count: int) -> list[dict]:
        """The newest messages, for a setup check."""
        page = self.get_json(
            f"{self.mailbox_url}/messages",
            {
                "$top": str(count),
                "$select": "id,receivedDateTime",
                "$orderby": "receivedDateTime desc",
            },
        )
        return page.get("value", [])

    def fetch_folder(self, folder_id: str) -> dict[str, Any]:
        return self.get_json(
            f"{self.mailbox_url}/mailFolders/{quote(folder_id, safe='')}",
            {"$select": "id,displayName,parentFolderId"},
        )

    def download_attachment(self, message_id: str, attachment_id: str, dest: Path) -> int:
        """Stream an attachment's raw bytes (MIME for an item attachment) into dest.

        Written to a temporary name and fsynced before it takes dest's name, so dest is either
        absent or complete. Returns the byte count.
        """
        size, commit = self.fetch_attachment(message_id, attachment_id, dest)
        commit()
        return size

    def fetch_attachment(
        self, message_id: str, attachment_id: str, dest: Path
    ) -> tuple[int, Callable[[], None]]:
        """The bytes of download_attachment, in a partial file; commit() then fsyncs it and
        gives it dest's name. The request slot is free before commit() is called, so a worker
        can hand commit() to the finisher thread and take its next download at once."""
        url = (
            f"{self.mailbox_url}/messages/{quote(message_id, safe='')}"
            f"/attachments/{quote(attachment_id, safe='')}/$value"
        )
        return self._download(url, dest, f"attachment {attachment_id[-12:]}")

    def download_message_mime(self, message_id: str, dest: Path) -> int:
        """Stream the whole message as MIME (`/messages/{id}/$value`) into dest (KEEP_MIME)."""
        size, commit = self.fetch_message_mime(message_id, dest)
        commit()
        return size

    def fetch_message_mime(self, message_id: str, dest: Path) -> tuple[int, Callable[[], None]]:
        """download_message_mime's bytes, committed by commit() (see fetch_attachment)."""
        url = f"{self.mailbox_url}/messages/{quote(message_id, safe='')}/$value"
        return self._download(url, dest, f"message {message_id[-12:]}")

    def _download(self, url: str, dest: Path, what: str) -> tuple[int, Callable[[], None]]:
        def action(out) -> int:
            out.seek(0)
            out.truncate()  # a retried download starts over
            with self._slots:
                response = self._send(url, None, stream=True)
                with response:
                    if response.status_code == 405:
                        raise NotDownloadable("reference attachment: no bytes to download", 405)
                    if response.status_code != 200:
                        raise graph_error(response)
                    size = 0
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
                        size += len(chunk)
                        crashpoints.reached("attachment-partial")
            return size

        # fsutil's one atomic write, entered here and left by commit(): fsync and rename happen
        # after the slot is released, off the request budget.
        writer = atomic_writer(dest)
        out = writer.__enter__()
        try:
            size = self._with_body_retries(lambda: action(out), what)
        except BaseException:
            writer.__exit__(*sys.exc_info())
            raise

        def commit() -> None:
            writer.__exit__(None, None, None)

        return size, commit

    def finisher(self) -> ThreadPoolExecutor:
        """One thread that fsyncs and renames downloaded files, in the order they finish."""
        with self._pool_lock:
            if self._finisher is None:
                self._finisher = ThreadPoolExecutor(1, thread_name_prefix="commit")
            return self._finisher
