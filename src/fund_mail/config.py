"""Configuration: find the .env file, read it with python-dotenv, validate every key at once.

Nothing on disk is created or changed here; a bad .env is reported whole, before any work starts.
"""

from __future__ import annotations

import os
import posixpath
import re
import sys
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fund_mail.errors import ConfigError

ADDRESS_RE = re.compile(r"[^@\s/,]+@[^@\s/,]+\.[^@\s/,]+")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
SOURCES = ("graph", "imap")
IMAP_TLS_MODES = ("ssl", "starttls")
# The resource Exchange Online's IMAP accepts app-only tokens for (IMAP.AccessAsApp).
IMAP_TOKEN_SCOPE = "https://outlook.office365.com/.default"


@dataclass(frozen=True)
class Config:
    """The settings of one installation, read from .env (see .env.sample). Secrets are left
    out of repr, so a Config in a log line or a traceback shows none of them."""

    email_id: str
    tenant_id: str
    client_id: str
    data_dir: Path
    log_dir: Path
    client_secret: str = field(default="", repr=False)
    client_cert_path: str = ""
    client_cert_password: str = field(default="", repr=False)
    graph_url: str = "https://graph.microsoft.com"
    authority_host: str = "https://login.microsoftonline.com"
    timezone: str = "Asia/Seoul"
    overlap_minutes: int = 30
    page_size: int = 1000
    publish_every: int = 2000
    audit_at: str = "01:00"
    audit_days: int = 2
    body_content_type: str = "html"
    http_timeout: float = 60.0
    max_concurrency: int = 4
    retry_backoff: float = 1.0
    # REQUESTS_CA_BUNDLE from .env: passed to the HTTPS sessions (it wins over the environment).
    ca_bundle: str = ""
    sftp_host: str = ""
    sftp_port: int = 22
    sftp_user: str = ""
    sftp_password: str = field(default="", repr=False)
    sftp_key_file: str = ""
    sftp_key_passphrase: str = field(default="", repr=False)
    sftp_base_dir: str = ""
    sftp_host_key: str = ""
    sftp_known_hosts: str = ""
    sftp_timeout: float = 30.0
    # Alerts (empty alert_to: no alert mail)
    alert_to: tuple[str, ...] = ()
    alert_smtp_host: str = ""
    alert_smtp_port: int = 587
    alert_smtp_user: str = ""
    alert_smtp_password: str = field(default="", repr=False)
    alert_from: str = ""
    alert_after_failures: int = 3
    alert_stale_minutes: int = 60
    alert_repeat_hours: int = 12
    client_secret_expires: date | None = None
    # Local retention (None: keep forever) and the service schedule
    retain_days: int | None = None
    interval_minutes: int = 5
    cycle_timeout_minutes: int = 60
    source: str = ""
    # SOURCE=imap reads the mailbox over IMAP instead of Graph (see fund_mail.imap).
    mail_source: str = "graph"
    imap_host: str = ""
    imap_port: int = 993
    imap_user: str = ""
    imap_password: str = field(default="", repr=False)
    imap_tls: str = "ssl"
    imap_token_scope: str = IMAP_TOKEN_SCOPE
    keep_mime: bool = False
    # MAILBOXES=a@x,b@x: several mailboxes, each in DATA_DIR/<mailbox>/ (see mailbox_configs).
    mailboxes: tuple[str, ...] = ()
    max_parallel_mailboxes: int = 2

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def upload_enabled(self) -> bool:
        return bool(self.sftp_host)

    def mailbox_configs(self) -> list[Config]:
        """One configuration per mailbox. A one-mailbox installation keeps today's layout."""
        if len(self.mailboxes) <= 1:
            return [self]
        return [self.for_mailbox(address) for address in self.mailboxes]

    def for_mailbox(self, address: str) -> Config:
        """A mailbox of several: its own cursor, index, locks, audit state and DBs under
        DATA_DIR/<mailbox>/, and SFTP_BASE_DIR/<mailbox>/ on the server."""
        folder = address.lower()
        return replace(
            self,
            email_id=address,
            mailboxes=(address,),
            data_dir=self.data_dir / folder,
            sftp_base_dir=posixpath.join(self.sftp_base_dir, folder) if self.sftp_base_dir else "",
            imap_user=address if self.mail_source == "imap" else self.imap_user,
        )

    def secrets(self) -> list[str]:
        """Values that must never reach a log line or an error message."""
        values = [self.client_secret, self.client_cert_password]
        values += [self.sftp_password, self.sftp_key_passphrase, self.imap_password]
        values += [self.alert_smtp_password]
        return [v for v in values if v]


def _clock(values: dict[str, str], key: str, default: str, problems: list[str]) -> str:
    """A local time of day, HH:MM."""
    text = values.get(key, "").strip() or default
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        problems.append(f"{key}={text!r} is not a time of day: use HH:MM, e.g. {default}")
        return default
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def find_env_file(explicit: str | None) -> Path:
    """--env-file, else next to the executable (PyInstaller build), else the current folder."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError([f"--env-file {explicit}: no such file"])
        return path
    candidates = []
    if getattr(sys, "frozen", False):
        candidates.append(Path(sys.executable).resolve().parent / ".env")
    candidates.append(Path.cwd() / ".env")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise ConfigError(
        [
            f"no .env file found (looked in: {looked}). Copy .env.sample to .env and fill it in,"
            " or pass --env-file PATH."
        ]
    )


def load_config(explicit_env_file: str | None = None) -> Config:
    path = find_env_file(explicit_env_file)
    try:
        # interpolate=False: python-dotenv would replace ${...} even inside single quotes, so a
        # password holding one would silently change. Values are taken literally.
        values = {k: (v or "").strip() for k, v in _dotenv_values(path).items()}
    except (UnicodeDecodeError, OSError) as e:
        raise ConfigError(
            [f"cannot read it as UTF-8 text ({type(e).__name__}): save it as UTF-8 in Notepad"],
            str(path),
        ) from e
    return config_from_values(values, source=str(path))


# -- validators: each reads one key (or one kind of key) and appends what is wrong -------------
Problems = list[str]
PATH_KEYS = (
    "DATA_DIR", "LOG_DIR", "CLIENT_CERT_PATH", "SFTP_KEY_FILE", "SFTP_KNOWN_HOSTS",
    "REQUESTS_CA_BUNDLE",
)  # fmt: skip
# Windows' MAX_PATH is 260 characters including the terminating NUL. The longest path the tool
# writes below DATA_DIR is yyyy_mm_dd/attach/ plus a partial attachment file
# (.<20 hex + extension>.<pid>-<thread id>.fmpart): under 100 characters.
MAX_PATH = 259
LONGEST_RELATIVE_PATH = 100


def _int(values: dict, key: str, default: int, lo: int, hi: int, problems: Problems) -> int:
    raw = values.get(key, "")
    if raw == "":
        return default
    try:
        number = int(raw)
    except ValueError:
        problems.append(f"{key}={raw!r} is not a whole number (expected {lo} to {hi})")
        return default
    if not lo <= number <= hi:
        problems.append(f"{key}={number} is out of range (expected {lo} to {hi})")
    return number


def _float(
    values: dict, key: str, default: float, lo: float, hi: float, problems: Problems
) -> float:
    raw = values.get(key, "")
    if raw == "":
        return default
    try:
        number = float(raw)
    except ValueError:
        problems.append(f"{key}={raw!r} is not a number (expected {lo:g} to {hi:g} seconds)")
        return default
    if not lo <= number <= hi:
        problems.append(f"{key}={raw} is out of range (expected {lo:g} to {hi:g} seconds)")
    return number


def _https_url(values: dict, key: str, default: str, problems: Problems) -> str:
    url = (values.get(key) or default).rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme != "https" or not parsed.netloc:
        problems.append(f"{key}={url!r} must be an https:// URL such as {default}")
    return url


def _required(values: dict, key: str, hint: str, problems: Problems) -> str:
    value = values.get(key, "")
    if not value:
        problems.append(f"{key} is missing: {hint}")
    return value


def _email_id(values: dict, problems: Problems) -> str:
    email_id = _required(
        values, "EMAIL_ID", "the mailbox to archive, e.g. fund@example.com", problems
    )
    if email_id and not ADDRESS_RE.fullmatch(email_id):
        problems.append(f"EMAIL_ID={email_id!r} is not a mailbox address like fund@example.com")
    return email_id


def _tenant_id(values: dict, problems: Problems, needed: bool = True) -> str:
    hint = "the Entra tenant id (Overview page of the app registration)"
    tenant_id = _required(values, "TENANT_ID", hint, problems if needed else [])
    if tenant_id and not re.fullmatch(r"[A-Za-z0-9.\-]+", tenant_id):
        problems.append(f"TENANT_ID={tenant_id!r} must be a GUID or a domain name")
    return tenant_id


def _client_id(values: dict, problems: Problems, needed: bool = True) -> str:
    hint = "the application (client) id of the app registration"
    client_id = _required(values, "CLIENT_ID", hint, problems if needed else [])
    if client_id and not GUID_RE.match(client_id):
        problems.append(
            f"CLIENT_ID={client_id!r} is not a GUID like 00000000-0000-0000-0000-000000000000"
        )
    return client_id


def _credentials(values: dict, paths: dict[str, str], problems: Problems) -> None:
    if not values.get("CLIENT_SECRET") and not paths["CLIENT_CERT_PATH"]:
        problems.append(
            "CLIENT_SECRET is missing: set it, or set CLIENT_CERT_PATH to a certificate"
        )


def _path_values(values: dict, problems: Problems) -> dict[str, str]:
    """Every path key, checked for what python-dotenv does to Windows paths, ~ expanded."""
    paths = {}
    for key in PATH_KEYS:
        raw = values.get(key, "")
        if re.search(r"[\x00-\x1f\x7f]", raw):
            # Inside double quotes python-dotenv reads \f, \n, \t, ... as escapes.
            problems.append(
                f"{key} holds a control character (in double quotes \\f, \\n, \\t ... are read "
                f"as escapes): write it in single quotes, with forward slashes, or without "
                f"quotes, e.g. {key}=c:/fund_mail/data"
            )
            raw = ""
        paths[key] = os.path.expanduser(raw) if raw.startswith("~") else raw
    return paths


def _existing_files(paths: dict[str, str], problems: Problems) -> None:
    for key in ("CLIENT_CERT_PATH", "SFTP_KEY_FILE", "REQUESTS_CA_BUNDLE"):
        if paths[key] and not Path(paths[key]).is_file():
            problems.append(f"{key}={paths[key]!r}: no such file (check the path)")


def writable_dir_problem(key: str, raw: str) -> str | None:
    """Check a directory can be used without creating it (validation touches nothing)."""
    path = Path(raw)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{key}={raw!r}: {probe} exists and is not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{key}={raw!r} is not writable by this user (check the folder's permissions)"
    return None


def _imap_settings(values: dict[str, str], problems: list[str]) -> dict:
    """SOURCE and the IMAP_* keys, as Config fields."""
    source = (values.get("SOURCE", "") or "graph").lower()
    if source not in SOURCES:
        problems.append(f"SOURCE={source!r} must be graph or imap")
    tls = (values.get("IMAP_TLS", "") or "ssl").lower()
    if tls not in IMAP_TLS_MODES:
        problems.append(f"IMAP_TLS={tls!r} must be ssl (port 993) or starttls (port 143)")
    host, user = values.get("IMAP_HOST", ""), values.get("IMAP_USER", "")
    if source == "imap":
        if not host:
            problems.append("IMAP_HOST is missing: the IMAP server, e.g. outlook.office365.com")
        if not user:
            problems.append("IMAP_USER is missing: the mailbox to sign in as")
    return {
        "mail_source": source,
        "imap_host": host,
        "imap_port": _int(values, "IMAP_PORT", 993, 1, 65535, problems),
        "imap_user": user,
        "imap_password": values.get("IMAP_PASSWORD", ""),
        "imap_tls": tls,
        "imap_token_scope": values.get("IMAP_TOKEN_SCOPE", "") or IMAP_TOKEN_SCOPE,
    }


def _mailboxes(values: dict[str, str], problems: list[str]) -> tuple[str, ...]:
    """MAILBOXES: comma-separated addresses, each once."""
    found: dict[str, str] = {}
    for address in (a.strip() for a in values.get("MAILBOXES", "").split(",")):
        if not address:
            continue
        if not ADDRESS_RE.fullmatch(address):
            problems.append(
                f"MAILBOXES: {address!r} is not a mailbox address like fund@example.com"
            )
        elif address.lower() in found:
            problems.append(f"MAILBOXES lists {address!r} twice")
        found.setdefault(address.lower(), address)
    return tuple(found.values())


def _folder(key: str, raw: str, problems: Problems) -> None:
    """An absolute, writable folder whose deepest file stays within Windows' MAX_PATH."""
    if not Path(raw).is_absolute():
        problems.append(
            f"{key}={raw!r} is a relative path, which would depend on the folder the task starts "
            f"in: write the full path, e.g. {key}=c:/fund_mail/data"
        )
        return
    longest = len(str(Path(raw))) + 1 + LONGEST_RELATIVE_PATH
    if longest > MAX_PATH:
        problems.append(
            f"{key}={raw!r} is {len(raw)} characters long, so the files below it reach "
            f"{longest} characters, over Windows' limit of {MAX_PATH + 1}: choose a shorter "
            "folder such as c:/fund_mail/data (or turn on 'Enable Win32 long paths' in Group "
            "Policy and keep the folder under 32,000 characters)"
        )
        return
    problem = writable_dir_problem(key, raw)
    if problem:
        problems.append(problem)


def _data_and_log_dirs(values: dict, paths: dict[str, str], problems: Problems) -> tuple[str, str]:
    data_dir = paths["DATA_DIR"]
    if not data_dir:
        hint = "the folder that holds the archive, e.g. c:/fund_mail/data"
        _required(values, "DATA_DIR", hint, problems)
        return "", paths["LOG_DIR"]
    _folder("DATA_DIR", data_dir, problems)
    if paths["LOG_DIR"]:
        _folder("LOG_DIR", paths["LOG_DIR"], problems)
        return data_dir, paths["LOG_DIR"]
    return data_dir, str(Path(data_dir) / "logs")


def _timezone(values: dict, problems: Problems) -> str:
    timezone = values.get("TIMEZONE", "") or "Asia/Seoul"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a region such as "Asia" is a folder in the time zone data, not a zone.
        problems.append(
            f"TIMEZONE={timezone!r} is not an IANA time zone: use a full name such as Asia/Seoul"
        )
    return timezone


def _body_type(values: dict, problems: Problems) -> str:
    body_type = (values.get("BODY_CONTENT_TYPE", "") or "html").lower()
    if body_type not in ("html", "text"):
        problems.append(f"BODY_CONTENT_TYPE={body_type!r} must be html or text")
    return body_type


def _sftp_host(values: dict, problems: Problems) -> str:
    host = values.get("HOST", "")
    if re.fullmatch(r"[^\s:/]+:\d+", host):
        problems.append(
            f"HOST={host!r} holds a port: write HOST={host.split(':')[0]} and PORT={host.split(':')[1]}"
        )
    elif host and not re.fullmatch(r"[A-Za-z0-9.\-]+|\[?[0-9A-Fa-f:]+\]?", host):
        problems.append(
            f"HOST={host!r} must be a host name or IP address only, e.g. sftp.example.com"
        )
    if host:
        _required(
            values, "SFTP_ID", "the SFTP user name (HOST is set, so uploads are on)", problems
        )
        _required(
            values,
            "SFTP_BASE_DIR",
            "the folder on the SFTP server that receives the archive",
            problems,
        )
        if not values.get("SFTP_PW") and not values.get("SFTP_KEY_FILE"):
            problems.append("SFTP_PW is missing: set it, or set SFTP_KEY_FILE to a private key")
    return host


def _host_key(values: dict, problems: Problems) -> str:
    host_key = values.get("SFTP_HOST_KEY", "")
    if host_key and not re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}=?", host_key):
        problems.append(
            f"SFTP_HOST_KEY={host_key!r} must be a fingerprint as `ssh-keygen -lf` prints it,"
            " e.g. SHA256:AbC...(43 characters)"
        )
    return host_key


def _alert_settings(values: dict[str, str], problems: Problems) -> dict:
    """ALERT_*, CLIENT_SECRET_EXPIRES and RETAIN_DAYS, as Config fields."""
    alert_to = tuple(a.strip() for a in values.get("ALERT_TO", "").split(",") if a.strip())
    for address in alert_to:
        if not ADDRESS_RE.fullmatch(address):
            problems.append(
                f"ALERT_TO: {address!r} is not a mail address; separate addresses with commas"
            )
    alert_smtp_host = values.get("ALERT_SMTP_HOST", "")
    if alert_smtp_host and not values.get("ALERT_SMTP_USER"):
        problems.append("ALERT_SMTP_USER is missing: the SMTP login (ALERT_SMTP_HOST is set)")
    alert_from = values.get("ALERT_FROM", "")
    if alert_from and not ADDRESS_RE.fullmatch(alert_from):
        problems.append(f"ALERT_FROM={alert_from!r} is not a mail address")
    secret_expires = None
    if raw_expiry := values.get("CLIENT_SECRET_EXPIRES", ""):
        try:
            secret_expires = date.fromisoformat(raw_expiry)
        except ValueError:
            problems.append(
                f"CLIENT_SECRET_EXPIRES={raw_expiry!r} is not a date: use YYYY-MM-DD as shown "
                "on the app registration's Certificates & secrets page"
            )
    retain_days = None
    if values.get("RETAIN_DAYS", ""):
        retain_days = _int(values, "RETAIN_DAYS", 0, 1, 36500, problems)
    return {
        "alert_to": alert_to,
        "alert_smtp_host": alert_smtp_host,
        "alert_smtp_port": _int(values, "ALERT_SMTP_PORT", 587, 1, 65535, problems),
        "alert_smtp_user": values.get("ALERT_SMTP_USER", ""),
        "alert_smtp_password": values.get("ALERT_SMTP_PASSWORD", ""),
        "alert_from": alert_from,
        "alert_after_failures": _int(values, "ALERT_AFTER_FAILURES", 3, 1, 1000, problems),
        "alert_stale_minutes": _int(values, "ALERT_STALE_MINUTES", 60, 5, 7 * 24 * 60, problems),
        "alert_repeat_hours": _int(values, "ALERT_REPEAT_HOURS", 12, 1, 24 * 30, problems),
        "client_secret_expires": secret_expires,
        "retain_days": retain_days,
    }


def config_from_values(values: dict[str, str], source: str = "") -> Config:
    """Validate every key and report every problem at once."""
    problems: Problems = []
    mailboxes = _mailboxes(values, problems)
    if mailboxes:
        # EMAIL_ID (and IMAP_USER) name the first mailbox unless set; each run takes its own.
        values = {**values, "EMAIL_ID": values.get("EMAIL_ID") or mailboxes[0]}
        values["IMAP_USER"] = values.get("IMAP_USER") or mailboxes[0]
        if len(mailboxes) > 1 and values.get("IMAP_PASSWORD"):
            problems.append(
                "IMAP_PASSWORD signs in one user, but MAILBOXES lists several: leave it empty "
                "to sign in to each mailbox with XOAUTH2"
            )
    imap = _imap_settings(values, problems)
    if imap["mail_source"] == "imap" and not values.get("EMAIL_ID"):
        values = {**values, "EMAIL_ID": imap["imap_user"]}
    # A password login to an IMAP server needs no app registration; everything else signs in.
    needs_app = imap["mail_source"] == "graph" or not imap["imap_password"]
    paths = _path_values(values, problems)
    email_id = _email_id(values, problems)
    tenant_id = _tenant_id(values, problems, needs_app)
    client_id = _client_id(values, problems, needs_app)
    if needs_app:
        _credentials(values, paths, problems)
    _existing_files(paths, problems)
    data_dir, log_dir = _data_and_log_dirs(values, paths, problems)
    timezone = _timezone(values, problems)
    body_type = _body_type(values, problems)
    sftp_host = _sftp_host(values, problems)
    host_key = _host_key(values, problems)
    alerts = _alert_settings(values, problems)
    config = Config(
        email_id=email_id,
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=values.get("CLIENT_SECRET", ""),
        client_cert_path=paths["CLIENT_CERT_PATH"],
        client_cert_password=values.get("CLIENT_CERT_PASSWORD", ""),
        data_dir=Path(data_dir),
        log_dir=Path(log_dir),
        graph_url=_https_url(values, "GRAPH_URL", "https://graph.microsoft.com", problems),
        authority_host=_https_url(
            values, "AUTHORITY_HOST", "https://login.microsoftonline.com", problems
        ),
        timezone=timezone,
        overlap_minutes=_int(values, "OVERLAP_MINUTES", 30, 0, 7 * 24 * 60, problems),
        page_size=_int(values, "PAGE_SIZE", 1000, 1, 1000, problems),
        publish_every=_int(values, "PUBLISH_EVERY", 2000, 1, 1_000_000, problems),
        audit_at=_clock(values, "AUDIT_AT", "01:00", problems),
        audit_days=_int(values, "AUDIT_DAYS", 2, 0, 31, problems),
        body_content_type=body_type,
        http_timeout=_float(values, "HTTP_TIMEOUT", 60.0, 1, 3600, problems),
        max_concurrency=_int(values, "MAX_CONCURRENCY", 4, 1, 4, problems),
        retry_backoff=_float(values, "RETRY_BACKOFF", 1.0, 0, 60, problems),
        ca_bundle=paths["REQUESTS_CA_BUNDLE"],
        sftp_host=sftp_host,
        sftp_port=_int(values, "PORT", 22, 1, 65535, problems),
        sftp_user=values.get("SFTP_ID", ""),
        sftp_password=values.get("SFTP_PW", ""),
        sftp_key_file=paths["SFTP_KEY_FILE"],
        sftp_key_passphrase=values.get("SFTP_KEY_PASSPHRASE", ""),
        sftp_base_dir=values.get("SFTP_BASE_DIR", "").rstrip("/") or ("/" if sftp_host else ""),
        sftp_host_key=host_key,
        sftp_known_hosts=paths["SFTP_KNOWN_HOSTS"],
        sftp_timeout=_float(values, "SFTP_TIMEOUT", 30.0, 1, 3600, problems),
        interval_minutes=_int(values, "INTERVAL_MINUTES", 5, 1, 24 * 60, problems),
        cycle_timeout_minutes=_int(values, "CYCLE_TIMEOUT_MINUTES", 60, 1, 24 * 60, problems),
        source=source,
        keep_mime=bool(_int(values, "KEEP_MIME", 0, 0, 1, problems)),
        mailboxes=mailboxes,
        max_parallel_mailboxes=_int(values, "MAX_PARALLEL_MAILBOXES", 2, 1, 16, problems),
        **imap,
        **alerts,
    )
    if problems:
        raise ConfigError(problems, source)
    return config


def _dotenv_values(path: Path) -> dict[str, str | None]:
    # Imported here: only a command that reads a .env file pays for python-dotenv.
    from dotenv import dotenv_values

    return dotenv_values(path, encoding="utf-8-sig", interpolate=False)
