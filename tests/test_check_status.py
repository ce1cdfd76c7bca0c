"""--check and --status: they report, and change nothing."""

import hashlib
from datetime import timedelta
from pathlib import Path

from fund_mail.admin.check import render, run_checks
from fund_mail.admin.status import status_report
from fund_mail.emulator import file_attachment
from fund_mail.engine import run_once
from tests.helpers import run_cli


def snapshot(folder: Path) -> dict[str, str]:
    """Every file's content, except logs and SQLite's transient WAL side files (a reader may
    create those; they hold no state)."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and "logs" not in p.parts and not p.name.endswith(("-shm", "-wal"))
    }


def test_check_all_green(sftp_config, graph, sftp_server, now):
    graph.mailbox.add_message(now)
    (sftp_server.root / "archive").mkdir(parents=True)
    before = snapshot(sftp_config.data_dir)
    checks = run_checks(sftp_config)
    assert [c.ok for c in checks] == [True] * 5, render(checks, color=False)
    text = render(checks, color=False)
    assert "[ OK ] mailbox access (Mail.Read): fund@example.com is readable" in text
    assert "host key verified, /archive is writable" in text
    assert snapshot(sftp_config.data_dir) == before
    assert list((sftp_server.root / "archive").iterdir()) == [], "the probe file is removed"


def test_check_explains_access_denied_and_unknown_host(sftp_config, graph, tmp_path):
    import dataclasses

    graph.deny_access = True
    empty = tmp_path / "empty"
    empty.write_text("")
    checks = run_checks(dataclasses.replace(sftp_config, sftp_known_hosts=str(empty)))
    text = render(checks, color=False)
    assert "[FAIL] mailbox access (Mail.Read)" in text and "ApplicationAccessPolicy" in text
    assert "[FAIL] SFTP server" in text and "is not known" in text
    assert text.endswith("2 check(s) failed.")


def test_check_cli_exit_codes_and_secrets(tmp_path, graph, data_dir):
    bad = graph.write_env(tmp_path / "bad.env", data_dir, CLIENT_SECRET="nope-nope-secret")
    result = run_cli("fund_mail_once", "--env-file", str(bad), "--check")
    assert result.returncode == 4
    assert "[FAIL] sign-in" in result.stdout and "AADSTS7000215" in result.stdout
    assert "nope-nope-secret" not in result.stdout + result.stderr
    assert not data_dir.exists(), "--check created nothing"
    broken = tmp_path / "broken.env"
    broken.write_text("EMAIL_ID=x\n")
    result = run_cli("fund_mail_once", "--env-file", str(broken), "--check")
    assert result.returncode == 2 and "[FAIL] configuration" in result.stdout


def test_status_before_any_run(config):
    text = status_report(config)
    assert "cursor:            none yet" in text and "runs:              none recorded" in text
    assert not config.data_dir.exists()


def test_status_after_runs(env_file, graph, data_dir, now):
    graph.mailbox.add_message(now - timedelta(hours=1))
    run_cli("fund_mail_once", "--env-file", str(env_file))
    graph.mailbox.add_message(now, attachments=[file_attachment("a.pdf", b"x")])
    graph.mailbox.add_message(now + timedelta(seconds=1))
    run_cli("fund_mail_once", "--env-file", str(env_file))
    graph.deny_access = True
    run_cli("fund_mail_once", "--env-file", str(env_file))
    before = snapshot(data_dir)
    result = run_cli("fund_mail_once", "--env-file", str(env_file), "--status")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "last good run:" in text and "2 message(s)" in text
    assert "archived today:    2 message(s) in 3 run(s)" in text
    assert "upload queue:      1 DB(s) (uploads are off: HOST is empty)" in text
    assert "last error:" in text and "exit 5: Graph answered 403 ErrorAccessDenied" in text
    assert "UTC =" in text and "Asia/Seoul" in text
    assert snapshot(data_dir) == before


def test_status_shows_the_waiting_queue(sftp_config, graph, now):
    import dataclasses

    from fund_mail.engine import deliver
    from fund_mail.errors import DeliveryError
    from tests.sftp_servers import free_port

    run_once(sftp_config)
    graph.mailbox.add_message(now)
    run_once(sftp_config)
    down = dataclasses.replace(sftp_config, sftp_port=free_port())
    try:
        deliver(down)
    except DeliveryError:
        pass
    text = status_report(sftp_config)
    assert "upload queue:      1 DB(s) waiting, oldest" in text and "1 attempt(s)" in text
