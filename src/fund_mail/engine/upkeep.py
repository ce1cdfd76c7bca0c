"""After the mail: manifests, retention, delivery and the run history."""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import TYPE_CHECKING

from fund_mail.archive.fsutil import RunLock, command_lock
from fund_mail.archive.index import ArchiveIndex
from fund_mail.archive.manifest import update_manifests
from fund_mail.archive.retention import RetentionReport, apply_retention
from fund_mail.config import Config
from fund_mail.engine.results import RunResult
from fund_mail.errors import LockedError
from fund_mail.logs import REDACTOR

if TYPE_CHECKING:
    from fund_mail.delivery import DeliveryReport

log = logging.getLogger(__name__)


# -- manifests and retention ----------------------------------------------------------------
def refresh_manifests(config: Config, index: ArchiveIndex) -> None:
    """Hash what was published and update the day manifests. The archive itself is already
    safe, so a failure here is logged and the next run catches up."""
    try:
        update_manifests(config.data_dir, index)
    except Exception as e:  # noqa: BLE001 - the published DB and cursor stand either way
        log.error("Could not update the manifest (the next run tries again): %s", e)


def retain(config: Config, today: date | None = None) -> RetentionReport | None:
    """Remove day folders past RETAIN_DAYS that the server holds; None when not due or busy.

    It holds both archive commands' locks, so it never removes a folder a run is writing to.
    """
    if config.retain_days is None or not config.data_dir.is_dir():
        return None
    try:
        with (
            RunLock(command_lock(config.data_dir, "fund_mail_once"), "fund_mail_once"),
            RunLock(command_lock(config.data_dir, "fund_mail_one_day"), "fund_mail_one_day"),
        ):
            index = ArchiveIndex(config.data_dir)
            read_back = None
            if config.upload_enabled:
                from fund_mail.delivery import ReadBack

                read_back = ReadBack(config)
            try:
                update_manifests(config.data_dir, index)
                return apply_retention(
                    config.data_dir,
                    index,
                    config.retain_days,
                    today or datetime.now(config.tz).date(),
                    read_back,
                )
            finally:
                if read_back is not None:
                    read_back.close()
                index.close()
    except LockedError:
        log.info("Another run is busy; local retention waits for the next run")
    except OSError as e:
        # Only local copies of delivered files are at stake; a marker finishes it next time.
        log.error("Local retention stopped (the next run goes on): %s", e)
    return None


# -- delivery and history --------------------------------------------------------------------
def deliver(config: Config) -> DeliveryReport | None:
    """Deliver everything queued in the outbox (oldest first); None when nothing is queued.

    paramiko is imported only when there is something to send, which keeps an idle cycle's
    start-up short.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    index = ArchiveIndex(config.data_dir)
    try:
        if not index.queued():
            from fund_mail.delivery import manifests_to_deliver

            if not manifests_to_deliver(index):
                return None
        from fund_mail.delivery import deliver_queue

        return deliver_queue(config, index)
    finally:
        index.close()


def record_run(
    config: Config,
    command: str,
    started_at: str,
    exit_code: int,
    error: str,
    result: RunResult | None,
) -> None:
    """Keep the run in the history that --status shows. Never fails the run itself."""
    if not config.data_dir.is_dir():
        return
    try:
        index = ArchiveIndex(config.data_dir)
        try:
            result = result or RunResult()
            db_file = index.relative(result.db_path) if result.db_path else ""
            index.record_run(
                command,
                started_at,
                exit_code,
                REDACTOR.redact(error),
                result.messages,
                result.attachments,
                result.bytes,
                db_file,
            )
        finally:
            index.close()
    except Exception as e:  # noqa: BLE001 - history is a convenience, the archive is not at stake
        log.warning("Could not record the run in the history: %s", e)
