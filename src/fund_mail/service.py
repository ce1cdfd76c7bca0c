"""fund_mail_service: the incremental cycle every INTERVAL_MINUTES, each in a child process.

The child is the same program running one fund_mail_once cycle. A cycle that hangs is killed at
CYCLE_TIMEOUT_MINUTES and the next one still starts on time. A stop request ends the service
within a few seconds: the running cycle is killed, but never while it publishes a DB, because
the kill waits for the publish lock (archive/index.PUBLISH_LOCK) that a publish holds from its
commit point to its rename. Any other moment is safe to kill by the commit protocol
(ARCHITECTURE.md): the next cycle finishes or redoes what the killed one left open.

The timing decisions are pure functions; ServiceLoop is the effects around them. The Windows
service (winservice.py) and the foreground mode for systemd both run the same loop.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fund_mail.archive.fsutil import RunLock
from fund_mail.archive.index import PUBLISH_LOCK
from fund_mail.config import Config
from fund_mail.errors import ExitCode, LockedError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how often the loop looks at the child and at a stop request
PUBLISH_WAIT = 2.0  # a publish is one transaction and one rename: milliseconds, not seconds


# -- decisions (pure) ----------------------------------------------------------------------
def next_start(previous_start: float | None, interval: float, now: float) -> float:
    """When the next cycle starts: one interval after the previous start, or at once when that
    moment has passed (a long cycle is followed by one cycle, never a backlog of them)."""
    if previous_start is None:
        return now
    return max(previous_start + interval, now)


def child_deadline(started: float, timeout: float) -> float:
    return started + timeout


def should_end(now: float, deadline: float, stop_requested: bool) -> str | None:
    """Why a running cycle must end now: 'stop', 'timeout', or None to let it run."""
    if stop_requested:
        return "stop"
    if now >= deadline:
        return "timeout"
    return None


@dataclass(frozen=True)
class Outcome:
    exit_code: int | None  # None when the loop ended the child
    ended_by: str = ""  # "", "stop" or "timeout"
    seconds: float = 0.0


# -- effects -------------------------------------------------------------------------------
def cycle_argv(env_file: str | None, quiet: bool = True) -> list[str]:
    """The child's command line: this program running one cycle."""
    options = ["cycle"] + (["--env-file", env_file] if env_file else []) + (["-q"] if quiet else [])
    if getattr(sys, "frozen", False):
        return [sys.executable, *options]  # fund_mail_service.exe cycle ...
    launcher = "import sys; from fund_mail.cli import service_main; sys.exit(service_main())"
    return [sys.executable, "-c", launcher, *options]


def _own_group() -> dict:
    """Start the child in its own process group, so that a Ctrl+C or a signal meant for the
    service reaches only the service, which then ends the child at a safe moment."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


class ServiceLoop:
    def __init__(
        self,
        data_dir: Path,
        argv: list[str],
        interval: float,
        timeout: float,
        on_outcome: Callable[[Outcome], None] | None = None,
        stop_event: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.data_dir = data_dir
        self.argv = argv
        self.interval = interval
        self.timeout = timeout
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.stop_requested = stop_event or threading.Event()
        self.stopping = threading.Event()  # set while a stop waits for a publish to finish
        self.clock = clock
        self.child: subprocess.Popen | None = None

    def stop(self) -> None:
        self.stop_requested.set()

    def run(self) -> None:
        log.info(
            "Service started: a cycle every %.0f s, each limited to %.0f s",
            self.interval,
            self.timeout,
        )
        previous: float | None = None
        while not self.stop_requested.is_set():
            start_at = next_start(previous, self.interval, self.clock())
            if self.stop_requested.wait(max(0.0, start_at - self.clock())):
                break
            previous = self.clock()
            outcome = self.run_cycle()
            try:
                self.on_outcome(outcome)
            except Exception as e:  # noqa: BLE001 - the loop outlives any one cycle's aftermath
                log.error("Handling the cycle's outcome failed: %s: %s", type(e).__name__, e)
        log.info("Service stopped")

    def run_cycle(self) -> Outcome:
        started = self.clock()
        deadline = child_deadline(started, self.timeout)
        try:
            child = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                # A Windows service has no console to inherit.
                stdout=None if sys.stdout else subprocess.DEVNULL,
                stderr=None if sys.stderr else subprocess.DEVNULL,
                **_own_group(),
            )
        except OSError as e:
            log.error("Could not start a cycle (%s): %s", self.argv[0], e)
            return Outcome(None, "", 0.0)
        self.child = child
        log.debug("Cycle started (pid %d)", child.pid)
        while True:
            try:
                code = child.wait(timeout=POLL_SECONDS)
            except subprocess.TimeoutExpired:
                reason = should_end(self.clock(), deadline, self.stop_requested.is_set())
                if reason is None:
                    continue
                self._end(child, reason)
                outcome = Outcome(None, reason, self.clock() - started)
                break
            outcome = Outcome(code, "", self.clock() - started)
            log.info("Cycle ended with exit code %d after %.1f s", code, outcome.seconds)
            break
        self.child = None
        return outcome

    def _end(self, child: subprocess.Popen, reason: str) -> None:
        """Kill the child, but never between a publish's commit point and its rename."""
        if reason == "stop":
            log.info("Stop requested: ending the running cycle (pid %d)", child.pid)
        else:
            log.error(
                "The cycle has run for %.0f s (CYCLE_TIMEOUT_MINUTES): ending it; the next cycle "
                "finishes or redoes its work",
                self.timeout,
            )
        self.stopping.set()
        try:
            while True:
                try:
                    with RunLock(self.data_dir / PUBLISH_LOCK, "publish", wait=PUBLISH_WAIT):
                        if child.poll() is None:
                            child.kill()
                        child.wait()
                        return
                except LockedError:
                    if child.poll() is not None:
                        return
                    log.warning("Waiting for a DB to finish publishing before ending the cycle")
        finally:
            self.stopping.clear()


def record_outcome(config: Config, outcome: Outcome) -> None:
    """A cycle the loop had to end recorded nothing itself: keep it in the run history as a
    failure (so that the failure streak and --status see it), then let the alerts look."""
    if outcome.ended_by != "timeout":
        return
    from fund_mail.alerts import check_and_notify
    from fund_mail.archive.index import utc_now_text
    from fund_mail.engine import record_run

    record_run(
        config,
        "fund_mail_once",
        utc_now_text(),
        int(ExitCode.RUN_FAILED),
        f"The cycle ran longer than CYCLE_TIMEOUT_MINUTES={config.cycle_timeout_minutes} and "
        "was ended; the next cycle finishes or redoes its work. If this repeats, look in "
        "fund_mail_once.log for where it hangs.",
        None,
    )
    check_and_notify(config)


def serve(config: Config, env_file: str | None, stop_event: threading.Event) -> None:
    """The service's whole life: cycles until stop_event is set."""
    ServiceLoop(
        config.data_dir,
        cycle_argv(env_file or config.source or None),
        interval=config.interval_minutes * 60.0,
        timeout=config.cycle_timeout_minutes * 60.0,
        on_outcome=lambda outcome: record_outcome(config, outcome),
        stop_event=stop_event,
    ).run()
