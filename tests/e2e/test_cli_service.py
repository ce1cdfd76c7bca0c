"""fund_mail_service run: the foreground mode systemd uses, driven as a real process."""

import os
import signal
import subprocess
import time

from tests.helpers import BIN, run_cli


def test_foreground_service_runs_a_cycle_and_stops_on_sigterm(env_file, data_dir):
    process = subprocess.Popen(
        [str(BIN / "fund_mail_service"), "run", "--env-file", str(env_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 60
        while not (data_dir / "LAST_TIME.json").exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "no cycle ran"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    log = (data_dir / "logs" / "fund_mail_service.log").read_text(encoding="utf-8")
    assert "Service started" in log and "Service stopped" in log


def test_windows_commands_are_refused_on_linux_with_the_fix(env_file):
    result = run_cli("fund_mail_service", "install", "--env-file", str(env_file))
    assert result.returncode == 2
    assert "fund_mail_service run" in result.stderr


def test_program_name_dispatch_knows_the_service():
    from fund_mail.cli import ENTRY_POINTS, service_main

    assert ENTRY_POINTS["fund_mail_service"] is service_main
