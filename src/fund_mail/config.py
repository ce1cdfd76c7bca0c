"""Configuration: find the .env file, read it with python-dotenv, validate every key at once.

Nothing on disk is created or changed here; a bad .env is reported whole, before any work starts.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from fund_mail.errors import ConfigError

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
SECRET_KEYS = (
    "CLIENT_SECRET",
    "CLIENT_CERT_PASSWORD",
    "SFTP_PW",
    "SFTP_KEY_PASSPHRASE",
    "ALERT_SMTP_PASSWORD",
)
ADDRESS_RE = re.compile(r"[^@\s/,]+@[^@\s/,]+\.[^@\s/,]+")


@dataclass(frozen=True)
class Config:
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

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def upload_enabled(self) -> bool:
        return bool(self.sftp_host)

    def secrets(self) -> list[str]:
        """Values that must never reach a log line or an error message."""
        values = [self.client_secret, self.client_cert_password]
        values += [self.sftp_password, self.sftp_key_passphrase, self.alert_smtp_password]
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
        values = {
            k: (v or "").strip() for k, v in dotenv_values(path, encoding="utf-8-sig").items()
        }
    except (UnicodeDecodeError, OSError) as e:
        raise ConfigError(
            [f"cannot read it as UTF-8 text ({type(e).__name__}): save it as UTF-8 in Notepad"],
            str(path),
        ) from e
    return config_from_values(values, source=str(path))


def _int(values: dict, key: str, default: int, lo: int, hi: int, problems: list[str]) -> int:
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


def _float(values: dict, key: str, default: float, lo: float, hi: float, problems: list[str]):
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


def _https_url(values: dict, key: str, default: str, problems: list[str]) -> str:
    url = (values.get(key) or default).rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme != "https" or not parsed.netloc:
        problems.append(f"{key}={url!r} must be an https:// URL such as {default}")
    return url


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


def config_from_values(values: dict[str, str], source: str = "") -> Config:
    problems: list[str] = []

    def required(key: str, hint: str) -> str:
        value = values.get(key, "")
        if not value:
            problems.append(f"{key} is missing: {hint}")
        return value

    email_id = required("EMAIL_ID", "the mailbox to archive, e.g. fund@example.com")
    if email_id and not re.fullmatch(r"[^@\s/]+@[^@\s/]+\.[^@\s/]+", email_id):
        problems.append(f"EMAIL_ID={email_id!r} is not a mailbox address like fund@example.com")
    tenant_id = required("TENANT_ID", "the Entra tenant id (Overview page of the app registration)")
    if tenant_id and not re.fullmatch(r"[A-Za-z0-9.\-]+", tenant_id):
        problems.append(f"TENANT_ID={tenant_id!r} must be a GUID or a domain name")
    client_id = required("CLIENT_ID", "the application (client) id of the app registration")
    if client_id and not GUID_RE.match(client_id):
        problems.append(
            f"CLIENT_ID={client_id!r} is not a GUID like 00000000-0000-0000-0000-000000000000"
        )

    client_secret = values.get("CLIENT_SECRET", "")
    cert_path = values.get("CLIENT_CERT_PATH", "")
    if not client_secret and not cert_path:
        problems.append(
            "CLIENT_SECRET is missing: set it, or set CLIENT_CERT_PATH to a certificate"
        )
    if cert_path and not Path(cert_path).is_file():
        problems.append(f"CLIENT_CERT_PATH={cert_path!r}: no such file")

    data_dir = required("DATA_DIR", "the folder that holds the archive, e.g. c:\\fund_mail\\data")
    if data_dir:
        problem = writable_dir_problem("DATA_DIR", data_dir)
        if problem:
            problems.append(problem)
    log_dir = values.get("LOG_DIR", "") or (str(Path(data_dir) / "logs") if data_dir else "")
    if values.get("LOG_DIR"):
        problem = writable_dir_problem("LOG_DIR", log_dir)
        if problem:
            problems.append(problem)

    timezone = values.get("TIMEZONE", "") or "Asia/Seoul"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"TIMEZONE={timezone!r} is not an IANA time zone such as Asia/Seoul")

    body_type = (values.get("BODY_CONTENT_TYPE", "") or "html").lower()
    if body_type not in ("html", "text"):
        problems.append(f"BODY_CONTENT_TYPE={body_type!r} must be html or text")

    sftp_host = values.get("HOST", "")
    sftp_port = _int(values, "PORT", 22, 1, 65535, problems)
    if sftp_host:
        required("SFTP_ID", "the SFTP user name (HOST is set, so uploads are on)")
        required("SFTP_BASE_DIR", "the folder on the SFTP server that receives the archive")
        if not values.get("SFTP_PW") and not values.get("SFTP_KEY_FILE"):
            problems.append("SFTP_PW is missing: set it, or set SFTP_KEY_FILE to a private key")
    key_file = values.get("SFTP_KEY_FILE", "")
    if key_file and not Path(key_file).is_file():
        problems.append(f"SFTP_KEY_FILE={key_file!r}: no such file")
    host_key = values.get("SFTP_HOST_KEY", "")
    if host_key and not re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}=?", host_key):
        problems.append(
            f"SFTP_HOST_KEY={host_key!r} must be a fingerprint as `ssh-keygen -lf` prints it,"
            " e.g. SHA256:AbC...(43 characters)"
        )

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

    config = Config(
        email_id=email_id,
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=client_secret,
        client_cert_path=cert_path,
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
        sftp_host=sftp_host,
        sftp_port=sftp_port,
        sftp_user=values.get("SFTP_ID", ""),
        sftp_password=values.get("SFTP_PW", ""),
        sftp_key_file=key_file,
        sftp_key_passphrase=values.get("SFTP_KEY_PASSPHRASE", ""),
        sftp_base_dir=values.get("SFTP_BASE_DIR", "").rstrip("/") or ("/" if sftp_host else ""),
        sftp_host_key=host_key,
        sftp_known_hosts=values.get("SFTP_KNOWN_HOSTS", ""),
        sftp_timeout=_float(values, "SFTP_TIMEOUT", 30.0, 1, 3600, problems),
        alert_to=alert_to,
        alert_smtp_host=alert_smtp_host,
        alert_smtp_port=_int(values, "ALERT_SMTP_PORT", 587, 1, 65535, problems),
        alert_smtp_user=values.get("ALERT_SMTP_USER", ""),
        alert_smtp_password=values.get("ALERT_SMTP_PASSWORD", ""),
        alert_from=alert_from,
        alert_after_failures=_int(values, "ALERT_AFTER_FAILURES", 3, 1, 1000, problems),
        alert_stale_minutes=_int(values, "ALERT_STALE_MINUTES", 60, 5, 7 * 24 * 60, problems),
        alert_repeat_hours=_int(values, "ALERT_REPEAT_HOURS", 12, 1, 24 * 30, problems),
        client_secret_expires=secret_expires,
        retain_days=retain_days,
        interval_minutes=_int(values, "INTERVAL_MINUTES", 5, 1, 24 * 60, problems),
        cycle_timeout_minutes=_int(values, "CYCLE_TIMEOUT_MINUTES", 60, 1, 24 * 60, problems),
        source=source,
    )
    if problems:
        raise ConfigError(problems, source)
    # requests reads REQUESTS_CA_BUNDLE from the environment; letting .env set it helps operators
    # behind a TLS-inspecting proxy, where editing the scheduled task's environment is awkward.
    ca_bundle = values.get("REQUESTS_CA_BUNDLE", "")
    if ca_bundle and "REQUESTS_CA_BUNDLE" not in os.environ:
        os.environ["REQUESTS_CA_BUNDLE"] = ca_bundle
    return config
