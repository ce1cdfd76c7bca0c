"""An attachment file that cannot be put in place fails the run cleanly: a clear error, nothing
recorded, the cursor unmoved, so the next run archives the message."""

import dataclasses
import os
from datetime import timedelta

import pytest

from fund_mail.archive import fsutil
from fund_mail.archive.cursor import read_cursor
from fund_mail.emulator import file_attachment
from fund_mail.engine import run_once
from fund_mail.errors import RunFailed
from tests.helpers import archived_ids


def test_attachment_held_open_fails_the_run_cleanly(config, graph, now, monkeypatch):
    run_once(config)
    before = read_cursor(config.data_dir)
    message = graph.mailbox.add_message(
        now + timedelta(minutes=1), attachments=[file_attachment("보고서.pdf", b"%PDF new")]
    )
    real = os.replace

    def replace(src, dst):
        if "attach" in str(dst):
            raise PermissionError(13, "Access is denied", str(dst))
        return real(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(fsutil, "RENAME_RETRY", dataclasses.replace(fsutil.RENAME_RETRY, backoff=0))
        patch.setattr(fsutil.os, "replace", replace)
        with pytest.raises(RunFailed, match=r"'보고서.pdf' could not be saved as .*next run tries"):
            run_once(config)
    assert read_cursor(config.data_dir) == before and archived_ids(config.data_dir) == []
    run_once(config)
    assert archived_ids(config.data_dir) == [message.immutable_id]
    attach_dir = next(config.data_dir.glob("*/attach"))
    assert [p.read_bytes() for p in attach_dir.iterdir()] == [b"%PDF new"]
