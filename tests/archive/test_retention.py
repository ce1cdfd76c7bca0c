"""Local retention: only folders whose every file is confirmed on the server go, and a crash
during removal leaves the whole folder or a marker that the next run finishes."""

import dataclasses
from datetime import date

import pytest

from fund_mail.admin.status import status_report
from fund_mail.archive import retention
from fund_mail.archive.index import ArchiveIndex
from fund_mail.archive.manifest import LocalTree, verify
from fund_mail.engine import deliver, retain
from fund_mail.errors import DeliveryError
from tests.archive.test_manifest import archive_days
from tests.sftp_servers import free_port

TODAY = date(2025, 7, 10)  # 2025_06_28 .. 2025_06_30 are 10+ days old


def keep(config, days):
    return dataclasses.replace(config, retain_days=days)


def data_files(config, day):
    folder = config.data_dir / day
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def local_check(config):
    index = ArchiveIndex(config.data_dir)
    try:
        return verify(LocalTree(config.data_dir), index.manifests(), False)
    finally:
        index.close()


def test_delivered_days_past_retain_days_are_removed_keeping_the_manifest(
    sftp_config, graph, sftp_server
):
    days = archive_days(sftp_config, graph)
    deliver(sftp_config)
    report = retain(keep(sftp_config, 10), today=TODAY)
    assert report.removed == days[:2], report.kept  # 2025_06_30 is exactly 10 days old: kept
    for day in days[:2]:
        assert data_files(sftp_config, day) == [f"manifest_{day}.json"]
    assert len(data_files(sftp_config, days[2])) == 4
    result = local_check(sftp_config)
    assert result.intact, result.problems
    assert result.server_only == 6
    assert (sftp_server.root / "archive" / days[0] / "attach").is_dir()
    status = status_report(keep(sftp_config, 10))
    assert f"oldest local day:  {days[2]} (RETAIN_DAYS=10)" in status
    assert "disk used:         0." in status and str(sftp_config.data_dir) in status


def test_nothing_is_removed_while_the_sftp_server_is_down(sftp_config, graph):
    down = dataclasses.replace(sftp_config, sftp_port=free_port())
    days = archive_days(down, graph)
    with pytest.raises(DeliveryError):
        deliver(down)
    report = retain(keep(down, 1), today=TODAY)
    assert report.removed == []
    assert set(report.kept) == set(days)
    assert all("queued for delivery" in reason for reason in report.kept.values())
    assert all(len(data_files(down, d)) == 4 for d in days)


def test_a_file_that_is_not_confirmed_keeps_its_folder(sftp_config, graph):
    days = archive_days(sftp_config, graph)
    deliver(sftp_config)
    (sftp_config.data_dir / days[0] / "attach" / "copied_in_by_hand.pdf").write_bytes(b"x")
    db = next((sftp_config.data_dir / days[1]).glob("fm_*.db"))
    db.write_bytes(db.read_bytes() + b"\0")  # changed after it was hashed and delivered
    report = retain(keep(sftp_config, 1), today=TODAY)
    assert report.kept[days[0]].endswith("copied_in_by_hand.pdf is not a recorded archive file")
    assert report.kept[days[1]].endswith("changed after it was hashed")
    assert report.removed == [days[2]]
    assert len(data_files(sftp_config, days[0])) == 5


def delivered_before_hashes_were_kept(config, graph):
    """A delivered day whose delivery records are missing, as after an upgrade."""
    days = archive_days(config, graph, days=[date(2025, 6, 28)])
    deliver(config)
    index = ArchiveIndex(config.data_dir)
    index._conn.execute("UPDATE file_hashes SET delivered_at = NULL")
    index.close()
    return days[0]


def test_a_file_without_a_delivery_record_is_confirmed_by_reading_the_server_copy(
    sftp_config, graph
):
    day = delivered_before_hashes_were_kept(sftp_config, graph)
    report = retain(keep(sftp_config, 1), today=TODAY)
    assert report.removed == [day], report.kept


def test_a_server_copy_that_differs_is_not_confirmed(sftp_config, graph, sftp_server):
    day = delivered_before_hashes_were_kept(sftp_config, graph)
    remote = next((sftp_server.root / "archive" / day / "attach").iterdir())
    data = bytearray(remote.read_bytes())
    data[-1] ^= 1  # same size, one byte altered
    remote.write_bytes(bytes(data))
    report = retain(keep(sftp_config, 1), today=TODAY)
    assert report.kept == {day: f"{day}/attach/{remote.name} is not confirmed on the server"}
    assert (sftp_config.data_dir / day / "attach" / remote.name).exists()


def test_no_read_back_and_no_removal_while_the_server_is_down(sftp_config, graph):
    day = delivered_before_hashes_were_kept(sftp_config, graph)
    down = keep(dataclasses.replace(sftp_config, sftp_port=free_port()), 1)
    report = retain(down, today=TODAY)
    assert report.removed == [] and "is not confirmed on the server" in report.kept[day]
    assert len(data_files(sftp_config, day)) == 4


def test_an_undelivered_manifest_keeps_its_folder(sftp_config, graph):
    days = archive_days(sftp_config, graph)
    deliver(sftp_config)
    index = ArchiveIndex(sftp_config.data_dir)
    index._conn.execute("UPDATE manifests SET delivered_sha256 = '' WHERE day = ?", (days[0],))
    index.close()
    report = retain(keep(sftp_config, 1), today=TODAY)
    assert report.kept == {days[0]: "its manifest is not delivered yet"}


def test_a_crash_during_removal_leaves_a_marker_the_next_run_finishes(
    sftp_config, graph, monkeypatch
):
    days = archive_days(sftp_config, graph, days=[date(2025, 6, 28)])
    deliver(sftp_config)

    def crash(path):
        raise KeyboardInterrupt("killed while deleting")

    monkeypatch.setattr(retention.shutil, "rmtree", crash)
    with pytest.raises(KeyboardInterrupt):
        retain(keep(sftp_config, 1), today=TODAY)
    marker = sftp_config.data_dir / f".retired-{days[0]}"
    assert marker.is_dir(), "the marker names the unfinished removal"
    monkeypatch.undo()
    retain(keep(sftp_config, 1), today=TODAY)
    assert not marker.exists()
    assert data_files(sftp_config, days[0]) == [f"manifest_{days[0]}.json"]
    assert local_check(sftp_config).intact


def test_keep_forever_by_default(sftp_config, graph):
    archive_days(sftp_config, graph, days=[date(2025, 6, 28)])
    deliver(sftp_config)
    assert sftp_config.retain_days is None
    assert retain(sftp_config, today=TODAY) is None
    assert len(data_files(sftp_config, "2025_06_28")) == 4


def test_due_days_is_by_folder_date():
    days = ["2025_06_28", "2025_06_29", "2025_06_30", "logs", "2025_07_10"]
    assert retention.due_days(days, TODAY, 10) == ["2025_06_28", "2025_06_29"]
    assert retention.due_days(days, TODAY, 1) == ["2025_06_28", "2025_06_29", "2025_06_30"]
