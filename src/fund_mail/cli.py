"""Console entry points. Thin: parse arguments, load the configuration, call the engine."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn

from fund_mail.archive.fsutil import command_lock, lock_holder, private_files
from fund_mail.config import Config, load_config
from fund_mail.errors import (
    ExitCode,
    FundMailError,
    IncompleteError,
    RunFailed,
    UsageError,
)
from fund_mail.logs import REDACTOR, ensure_console, label, setup_logging
from fund_mail.version import __version__

if TYPE_CHECKING:
    # The engine brings requests and msal: imported by the commands that sign in, when they run.
    from fund_mail.engine import RunResult
    from fund_mail.graph.client import GraphClient

log = logging.getLogger("fund_mail.cli")

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 run or upload failed, 2 configuration or arguments, 3 locked, "
    "4 sign-in, 5 mailbox access denied, 6 state file unreadable, 7 the archive is incomplete "
    "or altered (an audit --dry-run found gaps, or --verify found damage)."
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env-file",
        metavar="PATH",
        help="the .env to use (default: next to the program, then the current folder)",
    )
    parser.add_argument(
        "--no-upload",
        action="store_true",
        help="archive locally only; the DB stays queued for a later upload",
    )
    _verbosity(parser)


def _verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="debug output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def once_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fund_mail_once",
        description="Archive the mail that arrived since the last run into a new SQLite file, "
        "then deliver it to the SFTP server.",
        epilog=EXIT_CODES_HELP,
    )
    _common(parser)
    # One mode per run: argparse refuses two of them with "argument X: not allowed with Y".
    modes = parser.add_argument_group("modes (at most one)").add_mutually_exclusive_group()
    modes.add_argument(
        "--since",
        metavar="DATETIME",
        help="archive everything received since then (e.g. 2025-06-30T09:00, in TIMEZONE "
        "unless it has an offset); mail already archived is skipped",
    )
    modes.add_argument(
        "--upload-only",
        action="store_true",
        help="deliver the queued archives to the SFTP server without fetching mail",
    )
    modes.add_argument(
        "--check",
        action="store_true",
        help="check .env, sign-in, mailbox access and SFTP; print a checklist; change nothing",
    )
    modes.add_argument(
        "--status",
        action="store_true",
        help="show the last run, the cursor, today's count, the upload queue and the last error",
    )
    modes.add_argument(
        "--print-task-xml",
        nargs="?",
        const="-",
        metavar="PATH",
        help="print the Task Scheduler XML for the 5-minute task (or write it to PATH, in "
        "UTF-16 as schtasks wants) and the schtasks command that imports it",
    )
    modes.add_argument(
        "--demo",
        action="store_true",
        help="run the real pipeline against the built-in Graph emulator",
    )
    parser.add_argument(
        "--install-dir",
        default="c:\\fund_mail",
        metavar="FOLDER",
        help="with --print-task-xml: the folder holding fund_mail_once.exe (default c:\\fund_mail)",
    )
    parser.add_argument(
        "--task-user",
        default="",
        metavar="DOMAIN\\USER",
        help="with --print-task-xml: the account that runs the task (default: you)",
    )
    parser.add_argument(
        "--task-logon",
        choices=("password", "s4u"),
        default="password",
        help="with --print-task-xml: password (stored with the task; network shares work) or "
        "s4u (no password stored; local folders only). See INSTALL.md step 4",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="check the day folders against the manifest chain: every missing, extra or "
        "altered file and any break in the chain; exit 7 when the archive is not intact",
    )
    parser.add_argument(
        "--from", dest="date_from", metavar="YYYY-MM-DD", help="with --verify: the first day"
    )
    parser.add_argument(
        "--to", dest="date_to", metavar="YYYY-MM-DD", help="with --verify: the last day"
    )
    parser.add_argument(
        "--remote",
        action="store_true",
        help="with --verify: check the copies on the SFTP server instead of the local ones",
    )
    parser.add_argument(
        "--test-alert",
        action="store_true",
        help="send a test alert mail to ALERT_TO and report the result",
    )
    return parser


def print_task_xml(args: argparse.Namespace) -> int:
    from fund_mail.admin.schtasks import current_user, schtasks_command, task_xml, write_task_xml

    user, logon = args.task_user or current_user(), args.task_logon
    if args.print_task_xml == "-":
        target = args.install_dir.rstrip("\\/") + "\\fund_mail_once_task.xml"
        print(task_xml(args.install_dir, user, logon), end="")
        # The hint goes to stderr so that stdout stays a clean XML document.
        print(
            f"To import: fund_mail_once --print-task-xml {target}\n"
            f"then, in an administrator console: {schtasks_command(target, user, logon)}",
            file=sys.stderr,
        )
    else:
        write_task_xml(args.print_task_xml, args.install_dir, user, logon)
        print(f"Wrote {args.print_task_xml}. Import it in an administrator console with:")
        print(f"  {schtasks_command(args.print_task_xml, user, logon)}")
    return int(ExitCode.OK)


def source_engine(config: Config) -> ModuleType:
    """The engine of the configured source: Graph (engine), or IMAP (engine_imap, built on it).
    Both offer run_once, run_day and run_audit with the same arguments."""
    if config.mail_source == "imap":
        from fund_mail import engine_imap

        return engine_imap
    from fund_mail import engine

    return engine


def graph_ahead(config: Config, command: str) -> GraphClient | None:
    """For a command that will ask Graph for mail: a client whose sign-in has already started,
    before the engine is imported, so that its round trips overlap the rest of the start-up.

    None for the IMAP source, which signs in its own way, and when another run holds the
    command's lock: this run then stops at the lock without a single request.
    """
    if config.mail_source == "imap" or lock_holder(command_lock(config.data_dir, command)):
        return None
    from fund_mail.graph.auth import TokensAhead

    tokens = TokensAhead(config)
    from fund_mail.engine import open_graph

    return open_graph(config, tokens)


def _say(line: str) -> None:
    print(label(line), flush=True)
    log.debug(line)


# A page of 1,000 messages decodes into about 50,000 short-lived objects, almost none of them in
# reference cycles. At Python's default (a young-generation pass every 700 allocations) the
# collector scanned them about 110 times over a 5,000-message day, 35-50 ms of CPU that the rows
# waited for; at this threshold it runs once or twice. Cycles are still collected.
YOUNG_GENERATION_THRESHOLD = 50_000


def _begin(args: argparse.Namespace) -> None:
    """What every command does first: log to the console, and collect garbage less often."""
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD)
    setup_logging(None, args.verbose, args.quiet)


def _run(
    command: str,
    args: argparse.Namespace,
    work: Callable[[Config], int],
    log_to_file: bool = True,
    per_mailbox: bool = True,
) -> int:
    """Load the configuration, then run work for each mailbox (MAILBOXES), or the one."""
    _begin(args)

    def load_and_run() -> int:
        config = load_config(args.env_file)
        REDACTOR.add(*config.secrets())
        if log_to_file:
            setup_logging(config.log_dir, args.verbose, args.quiet, name=command)
        if not per_mailbox:
            return work(config)
        from fund_mail.mailboxes import run_each

        return run_each(config, lambda mailbox: _guarded(lambda: work(mailbox)))

    return _guarded(load_and_run)


def _guarded(action: Callable[[], int]) -> int:
    """Shared error handling: every failure mode maps to its own exit code, secrets masked."""
    try:
        return action()
    except FundMailError as e:
        log.error("%s", e)
        return int(e.exit_code)
    except KeyboardInterrupt:
        log.error("Interrupted; the next run finishes or redoes whatever this one left open")
        return int(ExitCode.RUN_FAILED)
    except Exception as e:  # noqa: BLE001 - last line of defence: log it, exit non-zero
        log.exception("Unexpected error: %s: %s", type(e).__name__, e)
        return int(ExitCode.RUN_FAILED)


def _recorded(command: str, config: Config, body: Callable[[], RunResult | None]) -> int:
    """Run body and keep its outcome in the run history that --status shows."""
    from fund_mail.archive.index import utc_now_text

    def record(*outcome) -> None:
        # The engine is imported once body has started its sign-in (graph_ahead).
        from fund_mail.engine import record_run

        record_run(config, command, started, *outcome)

    started = utc_now_text()
    try:
        result = body()
    except FundMailError as e:
        record(int(e.exit_code), str(e), e.result)
        raise
    except Exception as e:
        record(int(ExitCode.RUN_FAILED), f"{type(e).__name__}: {e}", None)
        raise
    record(int(ExitCode.OK), "", result)
    return int(ExitCode.OK)


def deliver_after(
    command: str, config: Config, args: argparse.Namespace, result: RunResult | None
) -> None:
    """Upload the outbox unless uploads are off. A failure raises DeliveryError (exit 1)."""
    from fund_mail.engine import deliver

    if not config.upload_enabled or args.no_upload:
        log.warning(
            "Upload is off (%s): archives stay queued in DATA_DIR",
            "--no-upload" if args.no_upload else "HOST is empty",
        )
        return
    try:
        report = deliver(config)
    except FundMailError as e:
        e.result = result  # the archive itself succeeded: keep its counts in the history
        raise
    _say(f"{command}: {report.summary() if report else 'nothing queued for delivery'}")


def _status(config: Config) -> int:
    from fund_mail.admin.status import status_report

    print("\n\n".join(status_report(mailbox) for mailbox in config.mailbox_configs()))
    return int(ExitCode.OK)


def _check(args: argparse.Namespace) -> int:
    """The checklist prints a red line for a bad .env too, instead of only a log error."""
    from fund_mail.admin.check import Check, exit_code, render, run_checks

    setup_logging(None, args.verbose, args.quiet)
    try:
        config = load_config(args.env_file)
    except FundMailError as e:
        checks = [Check("configuration", False, str(e), int(e.exit_code))]
    else:
        REDACTOR.add(*config.secrets())
        configs = config.mailbox_configs()
        checks = []
        for mailbox in configs:
            found = run_checks(mailbox)
            if len(configs) > 1:
                for check in found:
                    check.name = f"{mailbox.email_id}: {check.name}"
            checks += found
    print(REDACTOR.redact(render(checks)))
    return exit_code(checks)


def _usage(message: str) -> int:
    setup_logging(None)
    log.error("%s", UsageError(message))
    return int(ExitCode.CONFIG)


def _verify(config: Config, args: argparse.Namespace) -> int:
    from fund_mail.admin.verify import verify_archive

    first = parse_day(args.date_from, "--from") if args.date_from else None
    last = parse_day(args.date_to, "--to") if args.date_to else None
    if first and last and first > last:
        raise UsageError(f"--from {first} is after --to {last}: swap them")
    result, where = verify_archive(config, args.remote, first, last)
    print(result.render(where))
    return int(ExitCode.OK) if result.intact else int(ExitCode.INCOMPLETE)


def _test_alert(config: Config) -> int:
    from fund_mail.alerts import send_test_alert

    print(send_test_alert(config))
    return int(ExitCode.OK)


def once_main(argv: list[str] | None = None) -> int:
    ensure_console()
    private_files()
    parser = once_parser()
    args = parser.parse_args(argv)
    if args.upload_only and args.no_upload:
        parser.error("argument --no-upload: not allowed with argument --upload-only")
    if args.demo:
        from fund_mail.admin.demo import run_demo

        return run_demo()
    if args.print_task_xml:
        return print_task_xml(args)
    if args.check:
        return _check(args)
    if args.status:
        return _run("fund_mail_once", args, _status, log_to_file=False, per_mailbox=False)
    if (args.date_from or args.date_to or args.remote) and not args.verify:
        return _usage("--from, --to and --remote go with --verify")
    if args.verify:
        return _run("fund_mail_once", args, lambda config: _verify(config, args), False)
    if args.test_alert:
        return _run("fund_mail_once", args, _test_alert, log_to_file=False)

    def work(config: Config) -> int:
        from fund_mail.archive.rows import parse_datetime_arg

        since = None
        if args.since:
            try:
                since = parse_datetime_arg(args.since, config.tz)
            except (ValueError, OverflowError) as e:
                raise UsageError(
                    f"--since {args.since!r} is not a date or date-time such as 2025-06-30 or "
                    "2025-06-30T09:00"
                ) from e
            if since > datetime.now(config.tz):
                raise UsageError(
                    f"--since {args.since!r} is in the future (now is "
                    f"{datetime.now(config.tz):%Y-%m-%d %H:%M} in TIMEZONE): nothing after it "
                    "has arrived yet; pick a time up to now"
                )

        def body() -> RunResult | None:
            result = None
            if not args.upload_only:
                client = graph_ahead(config, "fund_mail_once")
                if client is None:
                    result = source_engine(config).run_once(config, since=since)
                else:
                    result = source_engine(config).run_once(config, since=since, client=client)
                _say(result.summary("fund_mail_once"))
            deliver_after("fund_mail_once", config, args, result)
            from fund_mail.engine import retain

            retained = retain(config)
            if retained and retained.removed:
                _say(f"fund_mail_once: removed {len(retained.removed)} delivered day(s) locally")
            return result

        try:
            return _recorded("fund_mail_once", config, body)
        finally:
            from fund_mail.alerts import check_and_notify

            check_and_notify(config)

    return _run("fund_mail_once", args, work)


DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def one_day_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fund_mail_one_day",
        description="Archive whole days of mail, [00:00, 24:00) in TIMEZONE, into one DB per "
        "day, then deliver them. The incremental cursor is never read or moved.",
        epilog=EXIT_CODES_HELP,
    )
    _common(parser)
    # One day or a range: argparse refuses --date with --from ("not allowed with").
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--date", metavar="YYYY-MM-DD", help="the day to archive (default: today in TIMEZONE)"
    )
    when.add_argument(
        "--from", dest="date_from", metavar="YYYY-MM-DD", help="first day of a range (with --to)"
    )
    parser.add_argument(
        "--to", dest="date_to", metavar="YYYY-MM-DD", help="last day of a range, included"
    )
    parser.add_argument(
        "--audit",
        action="store_true",
        help="instead of archiving whole days, compare each day in the mailbox with everything "
        "ever archived and archive only what is missing (one line per day)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="with --audit: report the gaps, change nothing (exit 7 when there are gaps)",
    )
    return parser


def parse_day(text: str, option: str) -> date:
    try:
        if not DATE_RE.match(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError as e:
        raise UsageError(f"{option} {text!r} is not a date: use YYYY-MM-DD, e.g. 2025-06-30") from e


def days_to_archive(args: argparse.Namespace, today: date) -> list[date]:
    """The days named by --date or --from/--to; UsageError (exit 2) for anything odd."""
    if args.date and (args.date_from or args.date_to):
        raise UsageError("use either --date or --from/--to, not both")
    if bool(args.date_from) != bool(args.date_to):
        raise UsageError("--from and --to go together: --from 2025-01-01 --to 2025-03-31")
    if args.date_from:
        first, last = parse_day(args.date_from, "--from"), parse_day(args.date_to, "--to")
        if first > last:
            raise UsageError(f"--from {first} is after --to {last}: swap them")
    else:
        first = last = parse_day(args.date, "--date") if args.date else today
    if last > today:
        raise UsageError(
            f"{last} is in the future (today is {today} in TIMEZONE): pick a day up to today"
        )
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


class _Progress:
    """A tqdm bar on an interactive terminal (days, with messages, bytes and an ETA), plain
    log lines otherwise. Pages may belong to a day listed ahead of the one being written."""

    def __init__(self, days: list[date]) -> None:
        self.bar = None
        self.day = days[0]
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=len(days) if len(days) > 1 else None,
                unit="day" if len(days) > 1 else "msg",
                file=sys.stderr,
            )
        self.listed = 0
        self.messages = 0
        self.bytes = 0

    def start(self, day: date) -> None:
        self.day, self.listed = day, 0

    def page(self, count: int, day: date | None = None) -> None:
        if day is not None and day != self.day:
            self.day, self.listed = day, 0
        self.listed += count
        if self.bar is None:
            log.info("%s: %d messages listed so far", self.day, self.listed)
        elif self.bar.unit == "msg":
            self.bar.update(count)
        else:
            self._postfix()

    def finished(self, day: date, result: RunResult) -> None:
        self.day = day
        self.messages += result.messages
        self.bytes += result.bytes
        self.done()

    def done(self) -> None:
        if self.bar is not None and self.bar.unit == "day":
            self.bar.update(1)  # tqdm's ETA comes from the days done so far
            self._postfix()

    def _postfix(self) -> None:
        if self.bar is None:
            return
        self.bar.set_postfix_str(
            f"{self.messages} msgs, {self.bytes / 1e6:.1f} MB archived, {self.listed} listed"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def one_day_main(argv: list[str] | None = None) -> int:
    ensure_console()
    private_files()
    parser = one_day_parser()
    args = parser.parse_args(argv)
    if args.dry_run and not args.audit:
        parser.error("--dry-run goes with --audit")

    def work(config: Config) -> int:
        days = days_to_archive(args, datetime.now(config.tz).date())
        body = _audit_days if args.audit else _archive_days
        return _recorded("fund_mail_one_day", config, lambda: body(config, args, days))

    return _run("fund_mail_one_day", args, work)


def _archive_days(config: Config, args: argparse.Namespace, days: list[date]) -> RunResult:
    client = graph_ahead(config, "fund_mail_one_day")
    from fund_mail.engine import range_failure, run_days, run_range

    progress = _Progress(days)
    delivery_errors: list[FundMailError] = []

    def after(day: date, result: RunResult) -> None:
        progress.finished(day, result)
        _say(result.summary(f"fund_mail_one_day {day}"))
        if result.db_path and not delivery_errors:
            try:
                deliver_after("fund_mail_one_day", config, args, result)
            except FundMailError as e:
                log.error("%s", e)
                delivery_errors.append(e)  # keep archiving; the outbox keeps the rest

    def imap_day(day: date) -> RunResult:
        return source_engine(config).run_day(
            config, day, on_page=lambda count: progress.page(count, day)
        )

    try:
        if config.mail_source == "imap":
            # IMAP has no list pages to share: its days run one after another.
            outcome = run_range(days, imap_day, lambda day, result: "", after)
        else:
            # One job for the whole range: a killed range resumes where it stopped.
            outcome = run_days(
                config,
                days,
                client=client,
                on_page=progress.page,
                on_day=after,
                resume=len(days) > 1,
            )
    finally:
        progress.close()
    if len(days) > 1:
        _say(
            f"fund_mail_one_day: {len(days)} day(s) from {days[0]} to {days[-1]}, "
            f"{outcome.total.messages} messages, {outcome.total.attachments} attachments, "
            f"{len(outcome.failed)} failed"
        )
    if len(days) == 1 and outcome.errors:
        raise outcome.errors[0]
    failure = range_failure(outcome, "fund_mail_one_day --date YYYY-MM-DD")
    if failure is not None:
        raise failure
    if delivery_errors:
        raise delivery_errors[0]
    return outcome.total


def _audit_days(config: Config, args: argparse.Namespace, days: list[date]) -> RunResult:
    """--audit: one line per day; exit 0 complete, 1 a repair failed, 7 gaps in a dry run."""
    from fund_mail.engine import DayAudit

    run_audit = source_engine(config).run_audit

    progress = _Progress(days)

    def report_day(audit: DayAudit) -> None:
        progress.done()
        _say(audit.line())

    try:
        report = run_audit(
            config,
            days,
            dry_run=args.dry_run,
            on_start=progress.start,
            on_day=report_day,
            on_page=progress.page,
        )
    finally:
        progress.close()
    if report.failed or (report.gaps and not args.dry_run):
        unfinished = sorted(set(report.failed) | set(report.gaps))
        error = RunFailed(
            f"The audit could not finish {len(unfinished)} day(s): "
            f"{', '.join(map(str, unfinished))}. Run fund_mail_one_day --audit --date "
            "YYYY-MM-DD again for each; the log says why."
        )
        error.result = report.total
        raise error
    if report.gaps:
        error = IncompleteError(
            f"{len(report.gaps)} day(s) have gaps: {', '.join(map(str, report.gaps))}. "
            "Repair them with fund_mail_one_day --audit (without --dry-run)."
        )
        error.result = report.total
        raise error
    if report.total.db_path:
        deliver_after("fund_mail_one_day", config, args, report.total)
    return report.total


def pst_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fund_mail_pst",
        description="Import a PST backup into TARGET/<pst name>.db (the archive schema) and "
        "TARGET/attach/yyyy_mm_dd/. Run it again to resume; nothing is imported twice.",
        epilog="Exit codes: 0 every item read, 1 some items or attachments could not be read "
        "(listed in the report), 2 bad arguments, not a PST, or an OST, 3 the PST is being imported.",
    )
    parser.add_argument("pst_path", metavar="PST_PATH", help="the .pst file")
    parser.add_argument("--target", required=True, metavar="DIR", help="the output folder")
    parser.add_argument(
        "--codepage",
        default="cp949",
        help="codepage of an ANSI (Outlook 97-2002) PST (default cp949, Korean)",
    )
    parser.add_argument(
        "--timezone",
        default="Asia/Seoul",
        help="zone of kst_time and of the attach/yyyy_mm_dd folders",
    )
    _verbosity(parser)
    return parser


def pst_main(argv: list[str] | None = None) -> int:
    ensure_console()
    private_files()
    from pathlib import Path
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    args = pst_parser().parse_args(argv)
    _begin(args)
    try:
        try:
            tz = ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise UsageError(
                f"--timezone {args.timezone!r} is not an IANA time zone such as Asia/Seoul"
            ) from e
        import codecs

        try:
            codecs.lookup(args.codepage)
        except LookupError as e:
            raise UsageError(f"--codepage {args.codepage!r} is not a codepage (try cp949)") from e
        from fund_mail.pst.importer import import_pst

        bar = None

        def progress(total: int) -> Callable[[], None]:
            nonlocal bar
            if sys.stderr.isatty():
                from tqdm import tqdm

                created = tqdm(total=total, unit="item", file=sys.stderr)
                bar = created

                def advance() -> None:
                    created.update(1)

                return advance
            seen = [0]

            def tick() -> None:
                seen[0] += 1
                if seen[0] % 500 == 0 or seen[0] == total:
                    log.info("%d of %d items read", seen[0], total)

            return tick

        try:
            report = import_pst(Path(args.pst_path), Path(args.target), tz, args.codepage, progress)
        finally:
            if bar is not None:
                bar.close()
        print(report.render())
        return int(ExitCode.RUN_FAILED) if report.problems else int(ExitCode.OK)
    except FundMailError as e:
        log.error("%s", e)
        return int(e.exit_code)


SERVICE_COMMANDS = (
    "run",
    "cycle",
    "install",
    "update",
    "remove",
    "start",
    "stop",
    "restart",
    "status",
)


def service_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fund_mail_service",
        description="Run fund_mail_once's cycle every INTERVAL_MINUTES as a long-running "
        "service, each cycle in a child process limited to CYCLE_TIMEOUT_MINUTES. "
        "`run` keeps it in the foreground (systemd, or a console); on Windows, install|start|"
        "stop|remove|status control the Windows service.",
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("command", choices=SERVICE_COMMANDS, help="what to do")
    parser.add_argument(
        "--env-file", metavar="PATH", help="the .env to use (default: next to the program)"
    )
    _verbosity(parser)
    return parser


def service_main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    if not raw and sys.platform == "win32":
        # Started by the Windows service manager: no arguments at all.
        return _windows_service([sys.argv[0]])
    args = service_parser().parse_args(raw)
    if args.command == "cycle":
        # One cycle in the child process: exactly fund_mail_once.
        options = ["--env-file", args.env_file] if args.env_file else []
        return once_main(options + (["-v"] if args.verbose else ["-q"] if args.quiet else []))
    if args.command == "run":
        return _run("fund_mail_service", args, lambda config: _serve_foreground(config, args))
    if sys.platform != "win32":
        return _usage(
            f"fund_mail_service {args.command} controls the Windows service; on Linux run "
            "`fund_mail_service run` under systemd (see fund_mail_service.service)"
        )
    return _windows_service([sys.argv[0], *raw])


def _serve_foreground(config: Config, args: argparse.Namespace) -> int:
    import signal
    import threading

    from fund_mail.service import serve

    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        log.info("Signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    serve(config, args.env_file, stop)
    return int(ExitCode.OK)


def _windows_service(argv: list[str]) -> int:
    import threading

    from fund_mail import winservice

    def work(stop: threading.Event) -> None:
        try:
            config = load_config(None)
            REDACTOR.add(*config.secrets())
            setup_logging(config.log_dir, name="fund_mail_service")
        except FundMailError as e:
            log.error("%s", e)
            return
        from fund_mail.service import serve

        serve(config, None, stop)

    return winservice.handle(argv, work)  # pyright: ignore[reportAttributeAccessIssue]


ENTRY_POINTS = {
    "fund_mail_once": once_main,
    "fund_mail_one_day": one_day_main,
    "fund_mail_pst": pst_main,
    "fund_mail_service": service_main,
}


def program_command(argv0: str) -> str | None:
    """The command a program's file name names, case-insensitively, also for a renamed copy
    such as "fund_mail_once (1).exe" or "Fund_Mail_One_Day - Copy.exe"; None when unclear."""
    name = re.split(r"[\\/]", argv0)[-1].lower().removesuffix(".exe")
    for command in ENTRY_POINTS:
        if re.match(rf"{command}(?![a-z0-9_])", name):
            return command
    return None


def main_for_program() -> int:
    """The PyInstaller executables run this file; the program's own name picks the command."""
    command = program_command(sys.argv[0])
    if command is None:
        ensure_console()
        print(
            f"fund_mail: cannot tell which command {sys.argv[0]!r} is from its name: rename it "
            "to fund_mail_once.exe, fund_mail_one_day.exe or fund_mail_pst.exe",
            file=sys.stderr,
        )
        return int(ExitCode.CONFIG)
    return ENTRY_POINTS[command]()


def leave(code: int) -> NoReturn:
    """End the process without the interpreter's teardown (55-100 ms of freeing modules).

    Only called when a command has returned: its DBs, index rows and cursor are committed and
    fsynced by then. The logs and the console are flushed here, before the exit.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed console: nothing left to lose
    os._exit(code)


def once_program() -> NoReturn:
    leave(once_main())


def one_day_program() -> NoReturn:
    leave(one_day_main())


if __name__ == "__main__":
    leave(main_for_program())
