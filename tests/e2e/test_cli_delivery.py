"""fund_mail_once with SFTP delivery, run as a separate process."""

import signal
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from fund_mail.emulator import file_attachment
from tests.helpers import run_cli
from tests.sftp_servers import free_port


def write_env(graph, sftp_server, data_dir, tmp_path, **overrides):
    values = graph.env_values(data_dir, RETRY_BACKOFF="0.05")
    values.update(sftp_server.env(tmp_path / "known_hosts"))
    values.update(overrides)
    env = tmp_path / ".env"
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return env


def landed(root: Path) -> list[str]:
    """The data files on the server (the day manifests that follow them left out)."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith((".", "manifest_"))
    )


def test_archive_and_deliver(graph, sftp_server, data_dir, tmp_path, now):
    env = write_env(graph, sftp_server, data_dir, tmp_path)
    assert run_cli("fund_mail_once", "--env-file", str(env)).returncode == 0
    graph.mailbox.add_message(now, attachments=[file_attachment("a.pdf", b"1234")])
    result = run_cli("fund_mail_once", "--env-file", str(env))
    assert result.returncode == 0, result.stderr
    assert "fund_mail_once: delivered 1 DB(s) and 2 file(s)" in result.stdout
    files = landed(sftp_server.root)
    assert len(files) == 2 and files[0].startswith("archive/") and files[-1].endswith(".db")
    assert len(list(sftp_server.root.glob("archive/*/manifest_*.json"))) == 1


def test_server_down_exits_1_archives_locally_then_catches_up(
    graph, sftp_server, data_dir, tmp_path, now
):
    down = write_env(graph, sftp_server, data_dir, tmp_path, PORT=str(free_port()))
    # Nothing queued yet: an idle run does not even connect, so the outage does not show.
    assert run_cli("fund_mail_once", "--env-file", str(down)).returncode == 0
    for minute in (1, 2):
        graph.mailbox.add_message(now + timedelta(minutes=minute))
        result = run_cli("fund_mail_once", "--env-file", str(down))
        assert result.returncode == 1
        assert "fund_mail_once: 1 messages" in result.stdout, "archived locally all the same"
        assert f"{minute} DB(s) with {minute} file(s) still queued" in result.stderr
    up = write_env(graph, sftp_server, data_dir, tmp_path)
    result = run_cli("fund_mail_once", "--env-file", str(up), "--upload-only")
    assert result.returncode == 0, result.stderr
    assert "delivered 2 DB(s)" in result.stdout
    assert len(landed(sftp_server.root)) == 2
    again = run_cli("fund_mail_once", "--env-file", str(up), "--upload-only")
    assert "nothing queued for delivery" in again.stdout


def test_no_upload_keeps_the_db_queued(graph, sftp_server, data_dir, tmp_path, now):
    env = write_env(graph, sftp_server, data_dir, tmp_path)
    run_cli("fund_mail_once", "--env-file", str(env))
    graph.mailbox.add_message(now)
    result = run_cli("fund_mail_once", "--env-file", str(env), "--no-upload")
    assert result.returncode == 0 and "Upload is off (--no-upload)" in result.stderr
    assert landed(sftp_server.root) == []
    assert run_cli("fund_mail_once", "--env-file", str(env), "--upload-only").returncode == 0
    assert len(landed(sftp_server.root)) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_killed_mid_upload_leaves_no_partial_final_file(
    graph, sftp_server, data_dir, tmp_path, now
):
    env = write_env(graph, sftp_server, data_dir, tmp_path)
    run_cli("fund_mail_once", "--env-file", str(env))
    graph.mailbox.add_message(
        now, attachments=[file_attachment("big.bin", synthetic_size=3_000_000)]
    )
    killed = run_cli(
        "fund_mail_once", "--env-file", str(env), env={"FUND_MAIL_CRASH_AT": "upload-partial"}
    )
    assert killed.returncode == -signal.SIGKILL
    assert landed(sftp_server.root) == []
    result = run_cli("fund_mail_once", "--env-file", str(env))
    assert result.returncode == 0, result.stderr
    sizes = {
        p.name: p.stat().st_size
        for p in sftp_server.root.rglob("*")
        if p.is_file() and not p.name.startswith((".", "manifest_"))
    }
    assert 3_000_000 in sizes.values() and len(sizes) == 2
