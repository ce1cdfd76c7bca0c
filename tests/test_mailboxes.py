"""Several mailboxes: the layout of each, side by side within the cap, the worst exit code."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fund_mail.config import config_from_values
from fund_mail.errors import ConfigError, ExitCode, worst
from fund_mail.mailboxes import run_each
from tests.test_config import GOOD


def several(tmp_path: Path, **changes: str):
    values = {**GOOD, "DATA_DIR": str(tmp_path / "data"), "MAILBOXES": "a@x.com, B@x.com,c@x.com"}
    values.update(changes)
    return config_from_values({k: v for k, v in values.items() if v is not None})


@pytest.mark.parametrize(
    "codes, expected",
    [
        ([], ExitCode.OK),
        ([0, 0], ExitCode.OK),
        ([0, 3], ExitCode.LOCKED),
        ([3, 1], ExitCode.RUN_FAILED),
        ([1, 5, 0], ExitCode.ACCESS_DENIED),
        ([5, 4], ExitCode.AUTH),
        ([7, 1], ExitCode.INCOMPLETE),
        ([6, 2, 4], ExitCode.CONFIG),
    ],
)
def test_the_worst_exit_code(codes, expected):
    assert worst(codes) == expected


def test_one_mailbox_keeps_todays_layout(tmp_path):
    config = config_from_values({**GOOD, "DATA_DIR": str(tmp_path / "data")})
    assert config.mailbox_configs() == [config]
    single = several(tmp_path, MAILBOXES="fund@example.com", EMAIL_ID=None)
    [only] = single.mailbox_configs()
    assert only.data_dir == tmp_path / "data" and only.email_id == "fund@example.com"


def test_each_mailbox_has_its_own_folders(tmp_path):
    config = several(
        tmp_path, HOST="sftp.example.com", SFTP_ID="u", SFTP_PW="p", SFTP_BASE_DIR="/in"
    )
    mailboxes = config.mailbox_configs()
    assert [m.email_id for m in mailboxes] == ["a@x.com", "B@x.com", "c@x.com"]
    assert [m.data_dir for m in mailboxes] == [
        tmp_path / "data" / n for n in ("a@x.com", "b@x.com", "c@x.com")
    ]
    assert [m.sftp_base_dir for m in mailboxes] == ["/in/a@x.com", "/in/b@x.com", "/in/c@x.com"]
    assert config.email_id == "fund@example.com" and config.max_parallel_mailboxes == 2


def test_mailboxes_problems(tmp_path):
    with pytest.raises(ConfigError) as caught:
        several(tmp_path, MAILBOXES="a@x.com, nobody, A@x.com", MAX_PARALLEL_MAILBOXES="0")
    text = "\n".join(caught.value.problems)
    assert "'nobody' is not a mailbox address" in text
    assert "MAILBOXES lists 'A@x.com' twice" in text
    assert "MAX_PARALLEL_MAILBOXES=0 is out of range" in text
    with pytest.raises(ConfigError, match="IMAP_PASSWORD signs in one user"):
        several(tmp_path, SOURCE="imap", IMAP_HOST="h", IMAP_PASSWORD="pw")
    imap = several(tmp_path, SOURCE="imap", IMAP_HOST="outlook.office365.com")
    assert [m.imap_user for m in imap.mailbox_configs()] == ["a@x.com", "B@x.com", "c@x.com"]


def test_mailboxes_run_side_by_side_within_the_cap(tmp_path):
    config = several(tmp_path)
    lock, both_running = threading.Lock(), threading.Event()
    active, most, seen = [0], [0], []

    def work(mailbox) -> int:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            seen.append(mailbox.email_id)
            if active[0] == 2:
                both_running.set()
        both_running.wait(timeout=10)
        with lock:
            active[0] -= 1
        return 0

    assert run_each(config, work) == 0
    assert sorted(seen) == ["B@x.com", "a@x.com", "c@x.com"]
    assert most[0] == 2, "two at a time: MAX_PARALLEL_MAILBOXES"


def test_one_failing_mailbox_does_not_stop_the_others(tmp_path):
    config = several(tmp_path, MAX_PARALLEL_MAILBOXES="1")
    seen = []

    def work(mailbox) -> int:
        seen.append(mailbox.email_id)
        return {"a@x.com": 5, "B@x.com": 1}.get(mailbox.email_id, 0)

    assert run_each(config, work) == ExitCode.ACCESS_DENIED
    assert seen == ["a@x.com", "B@x.com", "c@x.com"]
