"""The manifest chain: written per day as runs add files, delivered, and verified locally and
on the SFTP server against altered bytes, removed files and removed days."""

import json
import shutil
from datetime import date, datetime, time

import pytest

from fund_mail.archive.index import ArchiveIndex
from fund_mail.archive.manifest import LocalTree, manifest_relative, sha256_bytes, verify
from fund_mail.delivery import SftpTree, connect
from fund_mail.emulator import file_attachment
from fund_mail.engine import deliver, run_day
from tests.helpers import run_cli

DAYS = [date(2025, 6, 28), date(2025, 6, 29), date(2025, 6, 30)]


def archive_days(config, graph, days=DAYS, per_day=2):
    for n, day in enumerate(days):
        for i in range(per_day):
            moment = datetime.combine(day, time(9, i), tzinfo=config.tz)
            graph.mailbox.add_message(
                moment,
                subject=f"day {n} mail {i}",
                attachments=[file_attachment(f"a{n}{i}.pdf", b"%PDF" + bytes([n, i]) * 500)],
            )
        run_day(config, day)
    return [d.strftime("%Y_%m_%d") for d in days]


def check(config, tree, remote=False, **bounds):
    index = ArchiveIndex(config.data_dir)
    try:
        return verify(tree, index.manifests(), remote, **bounds)
    finally:
        index.close()


def test_each_day_gets_a_manifest_chained_to_the_previous_one(config, graph):
    days = archive_days(config, graph)
    previous = None
    for day in days:
        raw = (config.data_dir / manifest_relative(day)).read_bytes()
        document = json.loads(raw)
        listed = {f["path"] for f in document["files"]}
        on_disk = {
            p.relative_to(config.data_dir / day).as_posix()
            for p in (config.data_dir / day).rglob("*")
            if p.is_file() and not p.name.startswith("manifest_")
        }
        assert listed == on_disk and len(listed) == 3  # a DB and two attachments
        if previous is None:
            assert document["previous"] is None
        else:
            assert document["previous"]["day"] == previous[0]
            assert document["previous"]["sha256"] == sha256_bytes(previous[1])
        previous = (day, raw)
    assert check(config, LocalTree(config.data_dir)).intact


def test_a_later_run_of_a_day_updates_its_manifest_and_the_chain_after_it(config, graph):
    days = archive_days(config, graph)
    last_before = (config.data_dir / manifest_relative(days[2])).read_bytes()
    archive_days(config, graph, days=[DAYS[0]], per_day=1)  # a backfill of the first day again
    first = json.loads((config.data_dir / manifest_relative(days[0])).read_bytes())
    assert len([f for f in first["files"] if f["path"].endswith(".db")]) == 2
    assert (config.data_dir / manifest_relative(days[2])).read_bytes() != last_before
    assert check(config, LocalTree(config.data_dir)).intact


def damage(root, days):
    """Alter one byte of an attachment, remove a DB, and remove the middle day."""
    attachment = next((root / days[0] / "attach").iterdir())
    data = bytearray(attachment.read_bytes())
    data[10] ^= 1
    attachment.write_bytes(bytes(data))
    removed_db = next((root / days[2]).glob("fm_*.db"))
    removed_db.unlink()
    shutil.rmtree(root / days[1])
    return attachment, removed_db


def assert_damage_found(problems, root, days, attachment, removed_db):
    text = "\n".join(problems)
    assert f"ALTERED FILE: {attachment.relative_to(root).as_posix()}" in text
    assert f"MISSING FILE: {removed_db.relative_to(root).as_posix()}" in text
    assert f"{days[1]}: MISSING DAY" in text
    assert f"{days[2]}: BROKEN CHAIN" in text


def test_local_verify_finds_an_altered_byte_a_removed_file_and_a_removed_day(config, graph):
    days = archive_days(config, graph)
    found = damage(config.data_dir, days)
    result = check(config, LocalTree(config.data_dir))
    assert not result.intact
    assert_damage_found(result.problems, config.data_dir, days, *found)


def test_removing_the_newest_day_or_adding_a_file_is_found(config, graph):
    days = archive_days(config, graph)
    shutil.rmtree(config.data_dir / days[2])
    (config.data_dir / days[0] / "attach" / "planted.pdf").write_bytes(b"x")
    problems = "\n".join(check(config, LocalTree(config.data_dir)).problems)
    assert f"{days[2]}: MISSING DAY" in problems
    assert f"EXTRA FILE: {days[0]}/attach/planted.pdf" in problems


def test_a_rewritten_manifest_breaks_the_chain(config, graph):
    days = archive_days(config, graph)
    path = config.data_dir / manifest_relative(days[0])
    document = json.loads(path.read_bytes())
    document["files"].pop()
    path.write_text(json.dumps(document, indent=1))
    problems = "\n".join(check(config, LocalTree(config.data_dir)).problems)
    assert f"{days[0]}: ALTERED MANIFEST" in problems
    assert f"{days[1]}: BROKEN CHAIN" in problems


def test_range_checks_only_the_days_asked_for(config, graph):
    days = archive_days(config, graph)
    shutil.rmtree(config.data_dir / days[2])
    assert check(config, LocalTree(config.data_dir), first=days[0], last=days[1]).intact


def test_manifests_are_delivered_and_the_server_copy_is_verified(sftp_config, graph, sftp_server):
    days = archive_days(sftp_config, graph)
    deliver(sftp_config)
    root = sftp_server.root / "archive"
    for day in days:
        assert (root / manifest_relative(day)).read_bytes() == (
            sftp_config.data_dir / manifest_relative(day)
        ).read_bytes()
    transport, sftp = connect(sftp_config)
    try:
        assert check(sftp_config, SftpTree(sftp, "/archive"), remote=True).intact
        found = damage(root, days)
        result = check(sftp_config, SftpTree(sftp, "/archive"), remote=True)
    finally:
        transport.close()
    assert_damage_found(result.problems, root, days, *found)
    assert check(sftp_config, LocalTree(sftp_config.data_dir)).intact


def test_cli_verify_exit_codes_local_and_remote(sftp_config, graph, sftp_server, tmp_path):
    archive_days(sftp_config, graph)
    deliver(sftp_config)
    env = tmp_path / "sftp.env"
    values = dict(graph.env_values(sftp_config.data_dir, RETRY_BACKOFF="0.05"))
    values.update(sftp_server.env(tmp_path / "known_hosts"))
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    ok = run_cli("fund_mail_once", "--env-file", str(env), "--verify")
    assert ok.returncode == 0, ok.stderr
    assert "INTACT" in ok.stdout
    remote_ok = run_cli("fund_mail_once", "--env-file", str(env), "--verify", "--remote")
    assert remote_ok.returncode == 0, remote_ok.stdout + remote_ok.stderr
    next((sftp_server.root / "archive" / "2025_06_29").glob("fm_*.db")).unlink()
    bad = run_cli(
        "fund_mail_once", "--env-file", str(env), "--verify", "--remote",
        "--from", "2025-06-29", "--to", "2025-06-29",
    )  # fmt: skip
    assert bad.returncode == 7, bad.stdout + bad.stderr
    assert "MISSING FILE: 2025_06_29/fm_" in bad.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2025-06-30"], "--from, --to and --remote go with --verify"),
        (["--remote"], "--from, --to and --remote go with --verify"),
        (["--verify", "--from", "2025-06-30", "--to", "2025-06-01"], "swap them"),
        (["--verify"], "holds no archive index yet"),
        (["--verify", "--remote", "--from", "2025-6-1"], "is not a date"),
    ],
)
def test_cli_verify_refuses_odd_options(config, graph, env_file, args, message):
    if args != ["--verify"]:
        archive_days(config, graph, days=DAYS[:1])
    result = run_cli("fund_mail_once", "--env-file", str(env_file), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_manifest_a_failed_run_did_not_write_is_written_by_the_next(config, graph, monkeypatch):
    from fund_mail.archive import manifest
    from fund_mail.archive.manifest import update_manifests

    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(manifest, "write_atomic", disk_full)
    days = archive_days(config, graph, days=DAYS[:1])  # the run itself succeeds
    assert not (config.data_dir / manifest_relative(days[0])).exists()
    monkeypatch.undo()
    index = ArchiveIndex(config.data_dir)
    try:
        assert update_manifests(config.data_dir, index) == days
    finally:
        index.close()
    assert check(config, LocalTree(config.data_dir)).intact


def test_an_archive_from_before_the_manifests_gets_its_chain(config, graph):
    from fund_mail.archive.manifest import update_manifests

    days = archive_days(config, graph)
    index = ArchiveIndex(config.data_dir)
    try:
        index._conn.execute("DELETE FROM file_hashes")
        index._conn.execute("DELETE FROM manifests")
        for day in days:
            (config.data_dir / manifest_relative(day)).unlink()
        assert update_manifests(config.data_dir, index) == days
    finally:
        index.close()
    assert check(config, LocalTree(config.data_dir)).intact


def test_attachments_are_hashed_as_they_land_and_the_manifest_reads_only_the_db(
    config, graph, monkeypatch
):
    from fund_mail.archive import manifest

    read_back = []
    hash_file = manifest.file_sha256
    monkeypatch.setattr(manifest, "file_sha256", lambda p: read_back.append(p) or hash_file(p))
    (day,) = archive_days(config, graph, days=DAYS[:1])
    assert [p.suffix for p in read_back] == [".db"], "only the DB was read back"
    index = ArchiveIndex(config.data_dir)
    try:
        records = index.file_records(day)
    finally:
        index.close()
    attached = [r for r in records.values() if "/attach/" in r.path]
    assert len(attached) == 2
    for record in attached:
        assert record.sha256 == hash_file(config.data_dir / record.path)  # the bytes on disk
    assert check(config, LocalTree(config.data_dir)).intact
