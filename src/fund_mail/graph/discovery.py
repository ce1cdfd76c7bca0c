"""The sign-in endpoint's OIDC discovery answer, kept on disk between runs.

msal asks for `<authority>/v2.0/.well-known/openid-configuration` every time it starts, which
is one of the two sign-in requests of every scheduled run. The answer names the tenant's
endpoints and changes rarely, so it is kept as plain JSON with an expiry in DATA_DIR (never a
pickle: the file is data, and loading it runs no code). A failed sign-in forgets it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from fund_mail.archive.fsutil import write_atomic

log = logging.getLogger(__name__)

CACHE_NAME = "oidc_discovery.json"
LIFETIME = 24 * 3600.0  # seconds a discovery answer is reused
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"


class CachedDiscovery:
    """msal's http_client: a requests.Session whose discovery GETs are served from the cache.

    Every other request (the token POST, instance discovery) goes to the session unchanged.
    """

    def __init__(self, session: Any, path: Path, now=time.time) -> None:
        self._session = session
        self.path = path
        self._now = now

    def get(self, url: str, params: dict | None = None, **kwargs: Any):
        if not url.endswith(DISCOVERY_SUFFIX) or params:
            return self._session.get(url, params=params, **kwargs)
        cached = self._read(url)
        if cached is not None:
            return _response(url, cached)
        response = self._session.get(url, **kwargs)
        if response.status_code == 200:
            self._write(url, response.text)
        return response

    def post(self, url: str, *args: Any, **kwargs: Any):
        return self._session.post(url, *args, **kwargs)

    def close(self) -> None:
        self._session.close()

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)

    def _read(self, url: str) -> str | None:
        try:
            entry = json.loads(self.path.read_text(encoding="utf-8"))
            if entry["url"] == url and float(entry["expires_at"]) > self._now():
                json.loads(entry["body"])  # a damaged body is asked for again
                return str(entry["body"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.info("The cached discovery answer is unusable (%s); asking again", e)
        return None

    def _write(self, url: str, body: str) -> None:
        try:
            json.loads(body)
            entry = {"url": url, "expires_at": self._now() + LIFETIME, "body": body}
            write_atomic(self.path, json.dumps(entry))
        except (OSError, ValueError) as e:
            # The cache only saves a request; the run goes on without it.
            log.info("Could not keep the discovery answer: %s", e)


def _response(url: str, body: str):
    from requests import Response
    from requests.structures import CaseInsensitiveDict

    response = Response()
    response.status_code = 200
    response.url = url
    response._content = body.encode("utf-8")
    response.encoding = "utf-8"
    response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
    return response
