"""fund_mail_once as a user runs it: a separate process, a .env, exit codes, logs."""

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta

import pytest

from fund_mail import crashpoints
from fund_mail.archive.fsutil import RunLock
from fund_mail.emulator import file_attachment
from tests.helpers import BIN, archived_ids, archived_rows, run_cli


def once(env_file, *args, **kw):
    return run_cli("fund_mail_once", "--env-file", str(env_file), *args, **kw)


def test_baseline_then_new_mail(env_file, graph, data_dir, now):
    graph.mailbox.add_message(now - timedelta(hours=1))
    first = once(env_file)
    assert first.returncode == 0, first.stderr
    assert "baseline recorded" in first.stdout
    graph.mailbox.add_message(
        now, subject="새 메일", attachments=[file_attachment("a.pdf", b"x" * 9)]
    )
    second = once(env_file)
    assert second.returncode == 0, second.stderr
    summary = second.stdout.strip().splitlines()[-1]
    assert summary.startswith("fund_mail_once: 1 messages, 1 attachments, 9 bytes, ")
    assert summary.endswith(".db") and os.path.exists(summary.split(", ")[-1])
    assert "Upload is off (HOST is empty)" in second.stderr
    assert (data_dir / "logs" / "fund_mail_once.log").exists()


def test_missing_keys_exit_2_listing_every_problem(tmp_path):
    env = tmp_path / ".env"
    env.write_text("EMAIL_ID=not-an-address\nCLIENT_SECRET=abc-secret-123\n")
    result = once(env)
    assert result.returncode == 2
    for key in ("EMAIL_ID=", "TENANT_ID is missing", "CLIENT_ID is missing", "DATA_DIR is missing"):
        assert key in result.stderr
    assert "abc-secret-123" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == [env], "nothing touched"


def test_bad_since_is_a_usage_error(env_file):
    result = once(env_file, "--since", "yesterday")
    assert result.returncode == 2 and "--since 'yesterday'" in result.stderr


def test_wrong_secret_exits_4_and_leaves_state_alone(env_file, graph, data_dir, tmp_path, now):
    assert once(env_file).returncode == 0
    state = (data_dir / "LAST_TIME.json").read_bytes()
    bad_env = graph.write_env(tmp_path / "bad.env", data_dir, CLIENT_SECRET="wrong-secret-abc")
    graph.mailbox.add_message(now)
    result = once(bad_env)
    assert result.returncode == 4
    assert "AADSTS7000215" in result.stderr and "Fix:" in result.stderr
    assert "wrong-secret-abc" not in result.stderr
    assert (data_dir / "LAST_TIME.json").read_bytes() == state


def test_access_denied_exits_5(env_file, graph):
    graph.deny_access = True
    result = once(env_file)
    assert result.returncode == 5 and "ErrorAccessDenied" in result.stderr


def test_corrupt_state_exits_6(env_file, graph, data_dir):
    data_dir.mkdir(parents=True)
    (data_dir / "LAST_TIME.json").write_text("garbage")
    result = once(env_file)
    assert result.returncode == 6 and "--since" in result.stderr


def test_locked_exits_3_at_once(env_file, graph, data_dir):
    with RunLock(data_dir / "fund_mail_once.lock", "fund_mail_once"):
        result = once(env_file)
    assert result.returncode == 3 and "Another fund_mail_once run" in result.stderr
    assert graph.records() == []


def test_two_runs_started_together_one_works_one_exits_3(env_file, graph, data_dir, now):
    assert once(env_file).returncode == 0
    for i in range(30):
        graph.mailbox.add_message(
            now + timedelta(seconds=i), attachments=[file_attachment("f.bin", b"1" * 10)]
        )
    # The first run's list request is answered only after the second run has come and gone.
    arrived, release = threading.Event(), threading.Event()

    def hold(mailbox):
        arrived.set()
        release.wait(120)

    graph.on_request(hold, target="list")
    command = [str(BIN / "fund_mail_once"), "--env-file", str(env_file)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert arrived.wait(120), "the first run never reached its list request"
        second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    finally:
        release.set()
    first.communicate(timeout=120)
    assert (first.returncode, second.returncode) == (0, 3), second.stderr
    assert len(archived_ids(data_dir)) == 30


def test_secrets_never_reach_the_log(env_file, graph, data_dir, now):
    once(env_file, "-v")
    graph.mailbox.add_message(now)
    graph.expire_tokens()
    once(env_file, "-v")
    log_text = (data_dir / "logs" / "fund_mail_once.log").read_text("utf-8")
    assert "DEBUG" in log_text
    assert graph.registration.client_secret not in log_text
    for token in graph._tokens:
        assert token not in log_text


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize(
    "point", [p for p in crashpoints.POINTS if p not in ("upload-partial", "chunk-published")]
)
def test_kill_at_any_point_loses_nothing_and_duplicates_nothing(
    env_file, graph, data_dir, now, point
):
    assert once(env_file).returncode == 0
    batch1 = [
        graph.mailbox.add_message(
            now + timedelta(seconds=i), attachments=[file_attachment("r.pdf", b"%" * (i + 1))]
        )
        for i in range(5)
    ]
    killed = once(env_file, env={"FUND_MAIL_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL
    batch2 = [graph.mailbox.add_message(now + timedelta(seconds=10 + i)) for i in range(3)]
    recovered = once(env_file)
    assert recovered.returncode == 0, recovered.stderr
    found = archived_ids(data_dir)
    assert Counter(found).most_common(1)[0][1] == 1, "an email_id was archived twice"
    assert sorted(found) == sorted(m.immutable_id for m in batch1 + batch2)
    for row in archived_rows(data_dir, "fund_mail_attach"):
        path = data_dir / row["save_folder"] / row["phy_file_name"]
        assert path.stat().st_size == row["file_size"]
    assert not list(data_dir.glob("*/.once-*")), "temporary files are cleaned up"
    state = json.loads((data_dir / "LAST_TIME.json").read_text("utf-8"))
    assert state["last_email_id"] == batch2[-1].immutable_id


def test_files_0600_and_folders_0700(env_file, graph, data_dir, now):
    """The archive holds mail: on POSIX nothing the tool creates is readable by others."""
    from fund_mail.emulator import file_attachment

    assert run_cli("fund_mail_once", "--env-file", str(env_file)).returncode == 0
    graph.mailbox.add_message(now, attachments=[file_attachment("a.pdf", b"%PDF")])
    assert run_cli("fund_mail_once", "--env-file", str(env_file)).returncode == 0
    made = list(data_dir.rglob("*"))
    assert any(p.suffix == ".db" for p in made) and any(p.suffix == ".log" for p in made)
    for path in [data_dir, *made]:
        expected = 0o700 if path.is_dir() else 0o600
        assert path.stat().st_mode & 0o777 == expected, path
