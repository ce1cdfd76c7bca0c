"""The completeness audit: each day's ids in Graph against the archive index, and the
missing ones archived."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime

from fund_mail.archive.index import ArchiveIndex, AuditCounts
from fund_mail.archive.rows import graph_time
from fund_mail.config import Config
from fund_mail.engine.archiver import Archiver
from fund_mail.engine.plan import day_bounds, self_audit_days
from fund_mail.engine.ranges import run_range
from fund_mail.engine.results import RunResult
from fund_mail.engine.session import exclusive_index, open_graph
from fund_mail.engine.upkeep import refresh_manifests
from fund_mail.errors import GraphError
from fund_mail.graph.client import ID_FIELDS, GraphClient
from fund_mail.graph.paging import Window
from fund_mail.logs import REDACTOR

log = logging.getLogger(__name__)

AUDIT_PAGE = 1000  # the audit lists ids only: a full page costs no more than a short one


@dataclass
class DayAudit:
    """One audited day: the counts, and what archiving its missing messages wrote."""

    day: date
    counts: AuditCounts
    result: RunResult = field(default_factory=RunResult)

    @property
    def complete(self) -> bool:
        return self.counts.missing == self.counts.repaired

    def line(self) -> str:
        c = self.counts
        verdict = "complete" if self.complete else "GAPS"
        if c.dry_run and c.missing:
            verdict = "GAPS (dry run: nothing repaired)"
        return (
            f"{self.day}: {c.in_mailbox} in the mailbox, {c.archived} already archived, "
            f"{c.missing} missing, {c.repaired} repaired: {verdict}"
        )


def audit_day(
    config: Config,
    client: GraphClient,
    index: ArchiveIndex,
    day: date,
    *,
    command: str,
    dry_run: bool = False,
    not_before: datetime | None = None,
    on_page: Callable[[int], None] | None = None,
) -> DayAudit:
    """Compare a day in the mailbox with everything ever archived; archive what is missing.

    The listing is cheap (ids only, 1,000 a page). Only missing messages are fetched whole,
    one request each, and they go into a new DB in that day's folder through the outbox.
    """
    start, end = day_bounds(day, config)
    if not_before is not None:
        start = max(start, not_before)
    listed: list[str] = []
    if start < end:
        for page in client.fetch_sliced_pages(
            Window(start, end), AUDIT_PAGE, fields=ID_FIELDS, expand=False
        ):
            listed += [
                m["id"]
                for m in page
                if isinstance(m, dict) and m.get("id") and not m.get("isDraft")
            ]
            if on_page:
                on_page(len(page))
    known = index.known_ids(listed)
    missing = [i for i in listed if i not in known]
    counts = AuditCounts(len(listed), len(known), len(missing), 0, dry_run)
    if dry_run or not missing:
        return DayAudit(day, counts)
    with ThreadPoolExecutor(config.max_concurrency, thread_name_prefix="audit") as pool:
        fetched = list(pool.map(lambda i: _fetch_if_present(client, i), missing))
    present = [m for m in fetched if m is not None]
    vanished = len(fetched) - len(present)
    if vanished:
        log.info("%s: %d missing message(s) were deleted before they could be read", day, vanished)
    result = Archiver(config, client, index, command, source="audit").archive(
        [present],
        day_folder=day.strftime("%Y_%m_%d"),
        stem=f"fm_{day.strftime('%Y_%m_%d')}_{datetime.now(config.tz).strftime('%H%M')}",
        dedupe=True,
    )
    # Archived now, by this audit or by a run that took some of them first.
    repaired = len(index.known_ids(m["id"] for m in present))
    counts = AuditCounts(
        len(listed) - vanished, len(known), len(missing) - vanished, repaired, dry_run
    )
    return DayAudit(day, counts, result)


def _fetch_if_present(client: GraphClient, message_id: str) -> dict | None:
    try:
        return client.fetch_message(message_id)
    except GraphError as e:
        if e.status == 404:
            return None  # deleted since it was listed: nothing left to archive
        raise


@dataclass
class AuditReport:
    """Every day an audit looked at, and the days it could not audit."""

    audits: list[DayAudit] = field(default_factory=list)
    failed: list[date] = field(default_factory=list)  # the audit itself failed on these days
    total: RunResult = field(default_factory=RunResult)

    @property
    def gaps(self) -> list[date]:
        return [a.day for a in self.audits if not a.complete]


def run_audit(
    config: Config,
    days: list[date],
    *,
    dry_run: bool = False,
    on_start: Callable[[date], None] | None = None,
    on_day: Callable[[DayAudit], None] | None = None,
    on_page: Callable[[int], None] | None = None,
    client: GraphClient | None = None,
) -> AuditReport:
    """fund_mail_one_day --audit: each day in turn, under fund_mail_one_day's lock."""
    with exclusive_index(config, "day", "fund_mail_one_day") as index:
        client = client or open_graph(config)
        report = audit_range(
            config,
            index,
            days,
            lambda day: audit_day(
                config, client, index, day, command="day", dry_run=dry_run, on_page=on_page
            ),
            dry_run=dry_run,
            on_start=on_start,
            on_day=on_day,
        )
        report.total.requests = client.requests_made
        return report


def audit_range(
    config: Config,
    index: ArchiveIndex,
    days: list[date],
    audit: Callable[[date], DayAudit],
    *,
    dry_run: bool,
    on_start: Callable[[date], None] | None = None,
    on_day: Callable[[DayAudit], None] | None = None,
) -> AuditReport:
    """Audit each day with `audit` (Graph or IMAP), recording each outcome in the index and
    handing unrepaired gaps to the alerts; the day manifests follow what was repaired."""
    report = AuditReport()

    def audit_one(day: date) -> RunResult:
        if on_start:
            on_start(day)
        try:
            done = audit(day)
        except Exception as e:
            index.record_audit(day.isoformat(), "manual", AuditCounts(dry_run=dry_run), str(e))
            raise
        index.record_audit(day.isoformat(), "manual", done.counts)
        if not dry_run:
            report_audit_findings(config, {day.isoformat(): None if done.complete else done.line()})
        report.audits.append(done)
        if on_day:
            on_day(done)
        return done.result

    try:
        outcome = run_range(days, audit_one, lambda day, result: "")
    finally:
        refresh_manifests(config, index)
    report.failed, report.total = outcome.failed, outcome.total
    return report


def self_audit(
    config: Config,
    client: GraphClient | None,
    index: ArchiveIndex,
    now_local: datetime,
    floor: datetime,
    audit: Callable[[date], DayAudit] | None = None,
) -> None:
    """The daily self-audit inside fund_mail_once: never fails the incremental run.
    audit: how one day is audited (the IMAP source passes its own); Graph's by default."""

    def graph_audit(day: date) -> DayAudit:
        assert client is not None, "the Graph self-audit needs the run's client"
        return audit_day(config, client, index, day, command="once", not_before=floor)

    audit_one = audit or graph_audit
    days = self_audit_days(now_local, config.audit_at, config.audit_days, floor)
    if not days:
        return
    midnight = now_local.replace(hour=0, minute=0, second=0, microsecond=0)
    done = index.audited_complete_since(graph_time(midnight), [d.isoformat() for d in days])
    at = graph_time(now_local)
    findings: dict[str, str | None] = {}
    for day in [d for d in days if d.isoformat() not in done]:
        try:
            audited = audit_one(day)
        except Exception as e:  # noqa: BLE001 - the audit is retried by the next run
            log.warning("Self-audit of %s failed (retried on the next run): %s", day, e)
            error = REDACTOR.redact(str(e)) or type(e).__name__
            index.record_audit(day.isoformat(), "self", AuditCounts(), error, at=at)
            continue
        index.record_audit(day.isoformat(), "self", audited.counts, at=at)
        log.info("Self-audit %s", audited.line())
        findings[day.isoformat()] = None if audited.complete else audited.line()
    report_audit_findings(config, findings)


def report_audit_findings(config: Config, findings: dict[str, str | None]) -> None:
    """Hand the audit's unrepaired gaps (and the days found complete) to the alerts."""
    if not findings:
        return
    from fund_mail.alerts import report_audit

    try:
        report_audit(config.data_dir, findings)
    except Exception as e:  # noqa: BLE001 - the alert state must never fail a run
        log.error("Could not record the audit's findings for the alerts: %s", e)
