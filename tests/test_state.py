"""LAST_TIME.json and the run lock."""

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from fund_mail.archive.cursor import Cursor, read_cursor, write_cursor
from fund_mail.archive.fsutil import RunLock
from fund_mail.errors import LockedError, StateError

SEOUL = ZoneInfo("Asia/Seoul")


def test_cursor_round_trip_keeps_the_legacy_fields(tmp_path):
    moment = datetime(2025, 6, 30, 4, 47, 45, tzinfo=UTC)
    write_cursor(tmp_path, Cursor("id-1", moment, "제목", moment), SEOUL)
    saved = json.loads((tmp_path / "LAST_TIME.json").read_text("utf-8"))
    assert saved["last_email_id"] == "id-1"
    assert saved["last_fetch_time"] == "2025-06-30T04:47:45Z"
    assert saved["last_fetch_time_kst"] == "2025-06-30 13:47:45"
    assert saved["title"] == "제목"
    assert read_cursor(tmp_path) == Cursor("id-1", moment, "제목", moment)
    assert [p.name for p in tmp_path.iterdir()] == ["LAST_TIME.json"]


def test_legacy_state_without_floor_is_read(tmp_path):
    (tmp_path / "LAST_TIME.json").write_text(
        json.dumps(
            {
                "last_email_id": "old",
                "last_fetch_time": "2025-06-30T04:47:45",
                "last_fetch_time_kst": "2025-06-30 13:47:45",
                "title": "t",
            }
        )
    )
    cursor = read_cursor(tmp_path)
    assert cursor.archive_floor is None
    assert cursor.last_fetch_time == datetime(2025, 6, 30, 4, 47, 45, tzinfo=UTC)


def test_missing_state_is_none(tmp_path):
    assert read_cursor(tmp_path) is None


@pytest.mark.parametrize(
    "content",
    ["", "{", "[]", '{"last_email_id": "x"}', '{"last_fetch_time": "yesterday"}', "\x00\x01"],
)
def test_corrupt_state_is_an_error_never_a_reset(tmp_path, content):
    (tmp_path / "LAST_TIME.json").write_text(content)
    with pytest.raises(StateError, match="--since"):
        read_cursor(tmp_path)


def test_lock_is_exclusive_and_released(tmp_path):
    path = tmp_path / "x.lock"
    with RunLock(path, "fund_mail_once"):
        with pytest.raises(LockedError, match="Another fund_mail_once run"):
            with RunLock(path, "fund_mail_once"):
                pass
    with RunLock(path, "fund_mail_once"):
        pass
