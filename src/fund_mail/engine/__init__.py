"""The sync engine: one shared core behind fund_mail_once, fund_mail_one_day and the audit.

    plan.py      pure decisions: the scan window, the next cursor, the self-audit's days, the
                 pipeline's chunks, a local day's bounds (table-driven tests)
    results.py   what a run did
    archiver.py  the shared core: pages of Graph messages to published DBs, one download
                 pipeline per process
    session.py   what a command holds: its lock, the index, the Graph client
    runs.py      fund_mail_once (cursor, baseline, scan) and fund_mail_one_day (a day, a range)
    ranges.py    days one after another: a failed day does not stop the others
    audit.py     the completeness audit, on request and daily
    upkeep.py    manifests, retention, delivery, the run history

The commands, the service and the IMAP source import what they need from here.
"""

from fund_mail.engine.archiver import Archiver, DayWork
from fund_mail.engine.audit import AuditReport, DayAudit, audit_range, run_audit, self_audit
from fund_mail.engine.plan import (
    ScanPlan,
    day_bounds,
    next_cursor,
    plan_scan,
    self_audit_days,
    stage_sizes,
)
from fund_mail.engine.ranges import RangeResult, range_failure, run_range, settle_range
from fund_mail.engine.results import RunResult
from fund_mail.engine.runs import run_day, run_days, run_once
from fund_mail.engine.session import exclusive_index, open_graph
from fund_mail.engine.upkeep import deliver, record_run, refresh_manifests, retain

__all__ = [
    "Archiver",
    "AuditReport",
    "DayAudit",
    "DayWork",
    "RangeResult",
    "RunResult",
    "ScanPlan",
    "audit_range",
    "day_bounds",
    "deliver",
    "exclusive_index",
    "next_cursor",
    "open_graph",
    "plan_scan",
    "range_failure",
    "record_run",
    "refresh_manifests",
    "retain",
    "run_audit",
    "run_day",
    "run_days",
    "run_once",
    "run_range",
    "self_audit",
    "self_audit_days",
    "settle_range",
    "stage_sizes",
]
