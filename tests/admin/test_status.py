"""--status shows which run holds which lock, for how long, and as which process."""

import os
import signal
import subprocess
import sys
import time

from fund_mail.admin.status import status_report
from fund_mail.archive.fsutil import RunLock, lock_holder


def test_a_held_lock_shows_its_pid_and_age(config):
    config.data_dir.mkdir(parents=True)
    lock_path = config.data_dir / "fund_mail_once.lock"
    assert "locks:             none held" in status_report(config)
    with RunLock(lock_path, "fund_mail_once"):
        pid, started = lock_holder(lock_path)
        assert pid == os.getpid() and abs(started - time.time()) < 60
        assert lock_path.read_text() == f"{pid} {started}"
        assert f"fund_mail_once held by PID {pid} for 0 min" in status_report(config)
    assert lock_holder(lock_path) is None
    assert "locks:             none held" in status_report(config)


def test_a_killed_holder_is_not_shown(config, tmp_path):
    """The OS released the lock of a killed process; its details are still in the file."""
    config.data_dir.mkdir(parents=True)
    lock_path = config.data_dir / "fund_mail_one_day.lock"
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, pathlib; from fund_mail.archive.fsutil import RunLock\n"
            f"with RunLock(pathlib.Path({str(lock_path)!r}), 'x'):\n"
            f"    pathlib.Path({str(ready)!r}).write_text('1'); time.sleep(60)",
        ]
    )
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock_holder(lock_path)[0] == holder.pid
    assert f"fund_mail_one_day held by PID {holder.pid}" in status_report(config)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_path.read_text().startswith(str(holder.pid)), "details left behind"
    assert lock_holder(lock_path) is None
