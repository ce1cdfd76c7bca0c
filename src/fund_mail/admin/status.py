"""`fund_mail_once --status`: one screen on the state of the archive. Reads, never writes."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from fund_mail.archive.cursor import read_cursor
from fund_mail.archive.fsutil import command_lock, lock_holder
from fund_mail.archive.index import audit_history, imap_state, status_facts
from fund_mail.archive.manifest import DAY_RE
from fund_mail.archive.quarantine import quarantined
from fund_mail.archive.rows import local_time, parse_graph_time
from fund_mail.config import Config
from fund_mail.errors import StateError


def _local(text: str | None, config: Config) -> str:
    if not text:
        return "never"
    return f"{local_time(parse_graph_time(text), config.tz)} ({config.timezone})"


LOCKS = ("fund_mail_once", "fund_mail_one_day", "fund_mail_delivery")


def _locks(data_dir: Path) -> str:
    """Which commands are running now, since when, and as which process."""
    held = []
    for name in LOCKS:
        holder = lock_holder(command_lock(data_dir, name))
        if holder:
            pid, started = holder
            age = max(0, int(time.time()) - started)
            held.append(f"{name} held by PID {pid} for {age // 60} min {age % 60} s")
    return "; ".join(held) if held else "none held (no run in progress)"


def imap_lines(config: Config) -> list[str]:
    """SOURCE=imap keeps no cursor file: its state is per folder, in the index."""
    floor, folders = imap_state(config.data_dir)
    if floor is None:
        return [
            f"  IMAP {config.imap_user}@{config.imap_host}: no baseline yet "
            "(the first run records it)"
        ]
    lines = [
        f"  IMAP {config.imap_user}@{config.imap_host}: baseline {_local(floor, config)}, "
        f"{len(folders)} folder(s)"
    ]
    for folder, uidvalidity, last_uid, updated in folders:
        lines.append(
            f"    {folder}: UIDVALIDITY {uidvalidity}, UID {last_uid} read, {_local(updated, config)}"
        )
    return lines


def cursor_lines(config: Config) -> list[str]:
    try:
        cursor = read_cursor(config.data_dir)
    except StateError as e:
        return [f"  cursor:            UNREADABLE - {e}"]
    if cursor is None:
        return ["  cursor:            none yet (the first run records the baseline)"]
    moment = cursor.last_fetch_time
    return [
        f"  cursor:            {moment.strftime('%Y-%m-%d %H:%M:%S')} UTC = "
        f"{local_time(moment, config.tz)} {config.timezone}"
    ]


def status_report(config: Config) -> str:
    lines = [f"fund_mail status for {config.email_id} (DATA_DIR {config.data_dir})"]
    lines += imap_lines(config) if config.mail_source == "imap" else cursor_lines(config)
    lines.append(f"  locks:             {_locks(config.data_dir)}")
    held = quarantined(config.data_dir)
    if held:
        name, error = held[-1]
        lines.append(
            f"  quarantine:        {len(held)} message(s) could not be stored, see "
            f"{config.data_dir / 'quarantine'} (newest {name}: {error.splitlines()[0][:120]})"
        )
    lines += local_disk_lines(config)
    midnight = datetime.now(config.tz).replace(hour=0, minute=0, second=0, microsecond=0)
    facts = status_facts(config.data_dir, midnight.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    if facts is None:
        lines.append("  runs:              none recorded yet")
        return "\n".join(lines)
    if facts.last_good_run:
        finished, messages, db_file = facts.last_good_run
        lines.append(
            f"  last good run:     {_local(finished, config)}, {messages} message(s)"
            f"{', ' + db_file if db_file else ''}"
        )
    else:
        lines.append("  last good run:     never")
    lines.append(f"  archived today:    {facts.today[0]} message(s) in {facts.today[1]} run(s)")
    queued = facts.queued
    if not config.upload_enabled:
        lines.append(f"  upload queue:      {len(queued)} DB(s) (uploads are off: HOST is empty)")
    elif queued:
        oldest, attempts, error = queued[0]
        lines.append(
            f"  upload queue:      {len(queued)} DB(s) waiting, oldest {oldest} "
            f"({attempts} attempt(s){': ' + error.splitlines()[0] if error else ''})"
        )
    else:
        lines.append("  upload queue:      empty, everything delivered")
    if facts.last_failure:
        finished, command, code, error = facts.last_failure
        first_line = (error or "").splitlines()[0] if error else ""
        lines.append(
            f"  last error:        {_local(finished, config)} {command} exit {code}: "
            f"{first_line[:160]}"
        )
    else:
        lines.append("  last error:        none")
    lines += audit_lines(config)
    lines.append(alert_line(config))
    return "\n".join(lines)


def local_disk_lines(config: Config) -> list[str]:
    """Disk used by DATA_DIR and its oldest day folder that still holds data."""
    if not config.data_dir.is_dir():
        return ["  disk used:         nothing yet"]
    used = sum(p.stat().st_size for p in config.data_dir.rglob("*") if p.is_file())
    days = sorted(
        d.name
        for d in config.data_dir.iterdir()
        if d.is_dir() and DAY_RE.match(d.name) and _holds_data(d)
    )
    keep = (
        f"RETAIN_DAYS={config.retain_days}"
        if config.retain_days
        else "kept forever (RETAIN_DAYS is empty)"
    )
    return [
        f"  disk used:         {used / 1024**2:.1f} MB in {config.data_dir}",
        f"  oldest local day:  {days[0] if days else 'none'} ({keep})",
    ]


def _holds_data(day_dir: Path) -> bool:
    """A day whose data retention removed keeps only its manifest."""
    return any(p.is_file() and not p.name.startswith("manifest_") for p in day_dir.rglob("*"))


def audit_lines(config: Config, today: date | None = None) -> list[str]:
    """The last 7 days: verified complete, gaps found and repaired, or not yet audited."""
    today = today or datetime.now(config.tz).date()
    days = [(today - timedelta(days=n)).isoformat() for n in range(1, 8)]
    history = audit_history(config.data_dir, days)
    lines = ["  audit, last 7 days:"]
    for day in days:
        record = history.get(day)
        if record is None:
            state = "not yet audited"
        elif record.error:
            state = f"audit FAILED {_local(record.audited_at, config)}: {record.error[:120]}"
        elif record.missing == 0:
            state = (
                f"verified complete {_local(record.audited_at, config)}, "
                f"{record.in_mailbox} message(s)"
            )
        elif record.dry_run:
            state = f"{record.missing} missing (dry run, not repaired yet)"
        else:
            state = (
                f"{record.missing} gap(s) found, {record.repaired} repaired "
                f"{_local(record.audited_at, config)}, {record.in_mailbox} message(s)"
            )
        lines.append(f"    {day}  {state}")
    return lines


def alert_line(config: Config) -> str:
    """The problems an alert mail is out for (read from the alert state, never written)."""
    if not config.alert_to:
        return "  alerts:            off (ALERT_TO is empty)"
    from fund_mail.alerts import load_state

    active = load_state(config.data_dir).get("active", {})
    if not active:
        return f"  alerts:            none active; mail goes to {', '.join(config.alert_to)}"
    titles = "; ".join(entry["condition"]["title"] for entry in active.values())
    return f"  alerts:            {len(active)} active: {titles}"
