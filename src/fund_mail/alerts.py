"""Alert mail: tell a person when the unattended archive needs one, without storms.

Conditions are derived from what the archive already records (the run history and the outbox in
the archive index, the quarantine folder, the credential's expiry), plus conditions that other
checks raise and clear (the audit's unrepaired gaps, through report_audit).

For each condition there is one mail when it starts, a reminder at most every
ALERT_REPEAT_HOURS while it lasts, and one "resolved" mail when it clears. What was sent is kept
in DATA_DIR/fund_mail_alerts.json, written atomically, and only after the mail went out: a mail
that failed is simply due again on the next run. Sending never fails the run.

Deciding (evaluate, plan, render) is pure and takes the clock as an argument; sending and the
state file are the effects around it.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import ssl
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

from fund_mail.archive.fsutil import RunLock, write_atomic
from fund_mail.archive.index import INDEX_NAME, ArchiveIndex, RunRecord
from fund_mail.archive.rows import local_time, parse_graph_time
from fund_mail.config import Config
from fund_mail.errors import FundMailError, RunFailed
from fund_mail.logs import REDACTOR

log = logging.getLogger(__name__)

STATE_NAME = "fund_mail_alerts.json"
LOCK_NAME = "fund_mail_alerts.lock"
QUARANTINE = "quarantine"
COMMAND = "fund_mail_once"
OUTBOX_MAX_AGE = timedelta(hours=1)
EXPIRY_WARNING = timedelta(days=14)
AUDIT_GAP = "audit_gap"  # raised by the audit when it finds a gap it could not repair


@dataclass(frozen=True)
class Condition:
    key: str
    title: str
    since: str  # ISO 8601 UTC
    detail: str
    fix: str


@dataclass(frozen=True)
class Facts:
    """What the archive records, gathered once per check."""

    runs: list[RunRecord]  # newest first, lock refusals left out
    last_success: str | None
    first_run: str | None
    queued: int = 0
    oldest_queued: str | None = None
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (name, since)
    expiries: list[tuple[str, str]] = field(default_factory=list)  # (what, when)
    external: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    after_failures: int = 3
    stale: timedelta = timedelta(minutes=60)
    repeat: timedelta = timedelta(hours=12)
    upload_enabled: bool = True
    data_dir: str = "DATA_DIR"


@dataclass(frozen=True)
class Notice:
    kind: str  # problem | reminder | resolved | test
    condition: Condition


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _at(text: str) -> datetime:
    return parse_graph_time(text)


# -- deciding (pure) -----------------------------------------------------------------------
def evaluate(facts: Facts, settings: Settings, now: datetime) -> dict[str, Condition]:
    """Every condition that holds now, by key."""
    found: dict[str, Condition] = {}
    streak = []
    for run in facts.runs:
        if run.exit_code == 0:
            break
        streak.append(run)
    if len(streak) >= settings.after_failures:
        found["failures"] = Condition(
            "failures",
            f"{COMMAND} failed {len(streak)} times in a row",
            iso(_at(streak[-1].started_at)),
            streak[0].error or f"exit code {streak[0].exit_code}",
            "Follow the fix in the error above: it is the message fund_mail_once printed. "
            "`fund_mail_once --check` on this host shows which part fails.",
        )
    last_good = facts.last_success or facts.first_run
    if last_good and now - _at(last_good) >= settings.stale:
        found["stale"] = Condition(
            "stale",
            f"no successful run for {int((now - _at(last_good)).total_seconds() // 60)} minutes",
            iso(_at(last_good)),
            "fund_mail_once has not finished successfully"
            + (" since the time above." if facts.last_success else " since it was installed."),
            "Check that the scheduled task or the service runs (Task Scheduler > fund_mail_once, "
            "or `fund_mail_service status`), then run `fund_mail_once --check`.",
        )
    if (
        settings.upload_enabled
        and facts.oldest_queued
        and now - _at(facts.oldest_queued) >= OUTBOX_MAX_AGE
    ):
        found["outbox"] = Condition(
            "outbox",
            "archives are waiting for delivery for over an hour",
            iso(_at(facts.oldest_queued)),
            f"{facts.queued} DB(s) wait in the outbox; the archive is safe locally.",
            "Check that the SFTP server is reachable and has disk space: `fund_mail_once "
            "--check` tests it, and `fund_mail_once --upload-only` delivers the queue.",
        )
    if facts.quarantined:
        names = ", ".join(name for name, _ in facts.quarantined[:10])
        found["quarantine"] = Condition(
            "quarantine",
            f"{len(facts.quarantined)} message(s) quarantined",
            min(since for _, since in facts.quarantined),
            f"{settings.data_dir}/{QUARANTINE} holds: {names}",
            "The log names why each message was set aside. Once it is dealt with, move it out "
            "of the quarantine folder; this alert then resolves.",
        )
    for what, when in facts.expiries:
        if _at(when) - now <= EXPIRY_WARNING:
            verb = "has expired" if _at(when) <= now else "expires"
            found[f"expiry:{what}"] = Condition(
                f"expiry:{what}",
                f"{what} {verb} on {when[:10]}",
                iso(now) if _at(when) > now else when,
                f"The sign-in {what.lower().replace('_', ' ')} {verb} on {when[:10]} (UTC); "
                "after that every run fails with exit code 4.",
                _renewal(what),
            )
    for key, raised in facts.external.items():
        found[key] = Condition(
            key, raised["title"], raised["since"], raised["detail"], raised["fix"]
        )
    return found


def _renewal(what: str) -> str:
    if what == "CLIENT_SECRET":
        return (
            "Create a new client secret in the app registration (Certificates & secrets), put "
            "its Value in .env as CLIENT_SECRET and its expiry date as CLIENT_SECRET_EXPIRES, "
            "then run `fund_mail_once --check`."
        )
    return (
        "Upload a new certificate to the app registration (Certificates & secrets), point "
        "CLIENT_CERT_PATH at it, then run `fund_mail_once --check`."
    )


def plan(
    state: dict, conditions: dict[str, Condition], now: datetime, repeat: timedelta
) -> list[Notice]:
    """The mails due now: new problems, reminders that are due, and resolutions."""
    active: dict = state.get("active", {})
    notices = []
    for key, condition in sorted(conditions.items()):
        sent = active.get(key)
        if sent is None:
            notices.append(Notice("problem", condition))
        elif now - _at(sent["last_sent"]) >= repeat:
            notices.append(Notice("reminder", condition))
    for key, sent in sorted(active.items()):
        if key not in conditions:
            notices.append(Notice("resolved", Condition(**sent["condition"])))
    return notices


def record_sent(state: dict, notice: Notice, now: datetime) -> None:
    active = state.setdefault("active", {})
    key = notice.condition.key
    if notice.kind == "resolved":
        active.pop(key, None)
    elif notice.kind in ("problem", "reminder"):
        entry = active.setdefault(key, {"first_sent": iso(now)})
        entry.update(last_sent=iso(now), condition=asdict(notice.condition))


SUBJECTS = {
    "problem": "PROBLEM",
    "reminder": "STILL A PROBLEM",
    "resolved": "RESOLVED",
    "test": "TEST",
}


def render(
    notice: Notice,
    *,
    mailbox: str,
    host: str,
    last_success: str | None,
    tz_name: str,
    repeat_hours: int,
) -> tuple[str, str]:
    """(subject, plain-text body) of an alert mail."""
    condition = notice.condition
    from zoneinfo import ZoneInfo

    def when(text: str | None) -> str:
        if not text:
            return "never"
        return f"{local_time(_at(text), ZoneInfo(tz_name))} {tz_name}"

    subject = f"[fund_mail] {SUBJECTS[notice.kind]} on {host}: {condition.title}"
    opening = {
        "problem": f"fund_mail on {host} needs a person.",
        "reminder": f"fund_mail on {host} still needs a person.",
        "resolved": f"This problem of fund_mail on {host} is resolved; nothing more to do.",
        "test": f"This is a test of fund_mail's alert mail from {host}. Nothing is wrong.",
    }[notice.kind]
    lines = [
        opening,
        "",
        f"What is wrong:  {condition.title}",
        f"Since:          {when(condition.since)}",
        f"Last good run:  {when(last_success)}",
        f"Mailbox:        {mailbox}",
        f"Host:           {host}",
    ]
    if notice.kind != "test":
        lines += [
            "",
            "Details:",
            f"  {condition.detail}",
            "",
            "How to fix it:",
            f"  {condition.fix}",
        ]
    lines += [
        "",
        f"fund_mail sends one mail when a problem starts, a reminder every {repeat_hours} hours "
        "while it lasts, and one when it is resolved.",
    ]
    return subject, REDACTOR.redact("\n".join(lines)) + "\n"


# -- sending -------------------------------------------------------------------------------
class Transport(Protocol):
    name: str

    def send(self, to: list[str], subject: str, body: str) -> None: ...


class GraphTransport:
    """sendMail from the archived mailbox itself (app-only, Mail.Send)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.name = f"Graph sendMail as {config.email_id}"

    def send(self, to: list[str], subject: str, body: str) -> None:
        from fund_mail.graph.auth import TokenProvider
        from fund_mail.graph.client import GraphClient

        config = self.config
        client = GraphClient(config, TokenProvider(config), backoff=config.retry_backoff)
        client.send_mail(to, subject, body)


def build_email(sender: str, to: list[str], subject: str, body: str) -> EmailMessage:
    """A plain UTF-8 mail; the standard library encodes a Korean subject (RFC 2047)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(body, cte="quoted-printable")  # 7-bit safe, still readable
    return message


def smtp_tls_context() -> ssl.SSLContext:
    """System trust, plus REQUESTS_CA_BUNDLE when set: the same trust rule as for Graph."""
    context = ssl.create_default_context()
    bundle = os.environ.get("REQUESTS_CA_BUNDLE", "")
    if bundle and Path(bundle).is_file():
        context.load_verify_locations(cafile=bundle)
    return context


class SmtpTransport:
    """SMTP with STARTTLS and login (ALERT_SMTP_HOST, _PORT, _USER, _PASSWORD)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sender = config.alert_from or (
            config.alert_smtp_user if "@" in config.alert_smtp_user else config.email_id
        )
        self.name = f"SMTP {config.alert_smtp_host}:{config.alert_smtp_port} as {self.sender}"

    def send(self, to: list[str], subject: str, body: str) -> None:
        config = self.config
        message = build_email(self.sender, to, subject, body)
        with smtplib.SMTP(config.alert_smtp_host, config.alert_smtp_port, timeout=30) as smtp:
            smtp.starttls(context=smtp_tls_context())
            smtp.login(config.alert_smtp_user, config.alert_smtp_password)
            smtp.send_message(message)


def transport_for(config: Config) -> Transport:
    return SmtpTransport(config) if config.alert_smtp_host else GraphTransport(config)


# -- state and effects ---------------------------------------------------------------------
def load_state(data_dir: Path) -> dict:
    path = data_dir / STATE_NAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        return state if isinstance(state, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        # At worst a problem is announced a second time; nothing else depends on this file.
        log.warning("%s is unreadable (%s); alerts start afresh", path, e)
        return {}


def save_state(data_dir: Path, state: dict) -> None:
    write_atomic(data_dir / STATE_NAME, json.dumps(state, indent=1, ensure_ascii=False))


def _state_lock(data_dir: Path) -> RunLock:
    return RunLock(data_dir / LOCK_NAME, "alerts", wait=30)


def report_audit(data_dir: Path, findings: dict[str, str | None]) -> None:
    """The audit's findings per day (yyyy-mm-dd): a line naming a gap it could not repair, or
    None when the day is complete. Raises AUDIT_GAP while any day has one, clears it after."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with _state_lock(data_dir):
        state = load_state(data_dir)
        gaps: dict[str, str] = state.setdefault("audit_gaps", {})
        for day, line in findings.items():
            if line is None:
                gaps.pop(day, None)
            else:
                gaps[day] = line
        external = state.setdefault("external", {})
        if gaps:
            days = sorted(gaps)
            since = external.get(AUDIT_GAP, {}).get("since") or iso(datetime.now(UTC))
            external[AUDIT_GAP] = {
                "title": f"the audit found gaps it could not repair on {len(days)} day(s)",
                "since": since,
                "detail": " / ".join(gaps[d] for d in days),
                "fix": f"Run fund_mail_one_day --audit --from {days[0]} --to {days[-1]} again; "
                "if a gap stays, the log names the messages that could not be read.",
            }
        else:
            external.pop(AUDIT_GAP, None)
        save_state(data_dir, state)


def _quarantined(data_dir: Path) -> list[tuple[str, str]]:
    folder = data_dir / QUARANTINE
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if not path.name.startswith("."):
            found.append((path.name, iso(datetime.fromtimestamp(path.stat().st_mtime, UTC))))
    return found


def _expiries(config: Config) -> list[tuple[str, str]]:
    found = []
    if config.client_secret and config.client_secret_expires:
        end = datetime.combine(config.client_secret_expires, datetime.min.time(), config.tz)
        found.append(("CLIENT_SECRET", iso(end)))
    if config.client_cert_path:
        from fund_mail.graph.auth import certificate_expiry

        try:
            end = certificate_expiry(Path(config.client_cert_path), config.client_cert_password)
        except (OSError, ValueError) as e:
            log.warning("Cannot read the certificate's expiry from CLIENT_CERT_PATH: %s", e)
        else:
            found.append(("CLIENT_CERT", iso(end)))
    return found


def gather(config: Config, state: dict) -> Facts:
    index = ArchiveIndex(config.data_dir)
    try:
        runs = index.recent_runs(COMMAND, 1000)  # enough to date the start of a streak
        queued, oldest = index.oldest_queued()
        last_success, first_run = index.last_success(COMMAND), index.first_run(COMMAND)
    finally:
        index.close()
    return Facts(
        runs=runs,
        last_success=last_success,
        first_run=first_run,
        queued=queued,
        oldest_queued=oldest,
        quarantined=_quarantined(config.data_dir),
        expiries=_expiries(config),
        external=dict(state.get("external", {})),
    )


def settings_of(config: Config) -> Settings:
    return Settings(
        after_failures=config.alert_after_failures,
        stale=timedelta(minutes=config.alert_stale_minutes),
        repeat=timedelta(hours=config.alert_repeat_hours),
        upload_enabled=config.upload_enabled,
        data_dir=str(config.data_dir),
    )


def _render(config: Config, notice: Notice, last_success: str | None) -> tuple[str, str]:
    return render(
        notice,
        mailbox=config.email_id,
        host=socket.gethostname(),
        last_success=last_success,
        tz_name=config.timezone,
        repeat_hours=config.alert_repeat_hours,
    )


def check_and_notify(
    config: Config, now: datetime | None = None, transport: Transport | None = None
) -> list[str]:
    """Mail what is due; returns the subjects sent. Never raises: alerts must not fail a run."""
    if not config.alert_to or not (config.data_dir / INDEX_NAME).is_file():
        return []
    now = now or datetime.now(UTC)
    sent: list[str] = []
    try:
        with _state_lock(config.data_dir):
            state = load_state(config.data_dir)
            facts = gather(config, state)
            conditions = evaluate(facts, settings_of(config), now)
            notices = plan(state, conditions, now, timedelta(hours=config.alert_repeat_hours))
            transport = transport or transport_for(config)
            for notice in notices:
                subject, body = _render(config, notice, facts.last_success)
                try:
                    transport.send(list(config.alert_to), subject, body)
                except (OSError, smtplib.SMTPException, FundMailError) as e:
                    log.error("Could not send the alert %r via %s: %s", subject, transport.name, e)
                    continue
                log.warning("Alert sent to %s: %s", ", ".join(config.alert_to), subject)
                record_sent(state, notice, now)
                save_state(config.data_dir, state)
                sent.append(subject)
    except Exception as e:  # noqa: BLE001 - the archive run matters more than its alert
        log.error("The alert check failed: %s: %s", type(e).__name__, e)
    return sent


def send_test_alert(config: Config, transport: Transport | None = None) -> str:
    """`fund_mail_once --test-alert`: send one test mail now; RunFailed with the reason."""
    if not config.alert_to:
        from fund_mail.errors import UsageError

        raise UsageError("ALERT_TO is empty: set it in .env to the addresses that get alerts")
    transport = transport or transport_for(config)
    last_success = None
    if (config.data_dir / INDEX_NAME).is_file():
        index = ArchiveIndex(config.data_dir)
        try:
            last_success = index.last_success(COMMAND)
        finally:
            index.close()
    now = iso(datetime.now(UTC))
    notice = Notice(
        "test", Condition("test", "a test alert (fund_mail_once --test-alert)", now, "", "")
    )
    subject, body = _render(config, notice, last_success)
    try:
        transport.send(list(config.alert_to), subject, body)
    except (OSError, smtplib.SMTPException, FundMailError) as e:
        raise RunFailed(f"The test alert could not be sent via {transport.name}: {e}") from e
    return f"Test alert sent to {', '.join(config.alert_to)} via {transport.name}"
