"""SFTP delivery against real servers on 127.0.0.1: asyncssh in-process and OpenSSH's sshd."""

import dataclasses
import socket
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from fund_mail.archive.index import ArchiveIndex
from fund_mail.config import config_from_values
from fund_mail.delivery import SFTP_CONNECT_ATTEMPTS
from fund_mail.emulator import file_attachment
from fund_mail.engine import deliver, run_once
from fund_mail.errors import DeliveryError
from tests.sftp_servers import AsyncSftpServer, SshdServer, free_port, sshd_path


def archive_some(config, graph, now, count=3, offset=0):
    """Baseline (first call) and then one run that archives `count` messages."""
    if not (config.data_dir / "LAST_TIME.json").exists():
        run_once(config)
    for i in range(count):
        graph.mailbox.add_message(
            now + timedelta(minutes=offset, seconds=i),
            subject=f"m{offset}-{i}",
            attachments=[file_attachment(f"doc{i}.pdf", b"%PDF" + bytes([i]) * (1000 * (i + 1)))],
        )
    return run_once(config)


def remote_files(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()
    }


def local_expected(config) -> dict[str, int]:
    files = {}
    for db in config.data_dir.glob("*/fm_*.db"):
        files[f"archive/{db.relative_to(config.data_dir).as_posix()}"] = db.stat().st_size
    for manifest in config.data_dir.glob("*/manifest_*.json"):
        files[f"archive/{manifest.relative_to(config.data_dir).as_posix()}"] = (
            manifest.stat().st_size
        )
    for attachment in config.data_dir.glob("*/attach/*"):
        files[f"archive/{attachment.relative_to(config.data_dir).as_posix()}"] = (
            attachment.stat().st_size
        )
    return files


def queued(config):
    index = ArchiveIndex(config.data_dir)
    try:
        return index.queued()
    finally:
        index.close()


def test_happy_path_attachments_first_db_last(sftp_config, sftp_server, graph, now):
    result = archive_some(sftp_config, graph, now)
    report = deliver(sftp_config)
    assert (report.delivered_dbs, report.delivered_files) == (1, 4)
    assert remote_files(sftp_server.root) == local_expected(sftp_config)
    completed = sftp_server.switches.uploads_completed
    data = [c for c in completed if "manifest_" not in c]
    assert data[-1].endswith(result.db_path.name), "the DB is renamed into place last"
    assert "manifest_" in completed[-1], "the day's manifest follows the files it lists"
    assert queued(sftp_config) == []


def test_uploading_again_is_harmless(sftp_config, sftp_server, graph, now):
    archive_some(sftp_config, graph, now)
    deliver(sftp_config)
    index = ArchiveIndex(sftp_config.data_dir)
    index._conn.execute("UPDATE outbox SET delivered_at = NULL")
    index.close()
    before = remote_files(sftp_server.root)
    deliver(sftp_config)
    assert remote_files(sftp_server.root) == before


def test_server_down_for_several_runs_then_back(sftp_config, sftp_server, graph, now, tmp_path):
    down = dataclasses.replace(sftp_config, sftp_port=free_port())
    for run in range(3):
        archive_some(down, graph, now, count=2, offset=run + 1)
        with pytest.raises(DeliveryError, match=r"3 DB\(s\)|2 DB\(s\)|1 DB\(s\)") as caught:
            deliver(down)
        assert "still queued" in str(caught.value)
    assert len(queued(sftp_config)) == 3
    report = deliver(sftp_config)
    assert report.delivered_dbs == 3
    assert remote_files(sftp_server.root) == local_expected(sftp_config)
    finals = Counter(sftp_server.switches.uploads_completed)
    assert max(finals.values()) == 1, "every file arrived once"
    dbs = [p for p in sftp_server.switches.uploads_completed if p.endswith(".db")]
    assert dbs == sorted(dbs), "oldest first"


class HangUp:
    """A TCP port that accepts connections and closes them before the SSH banner."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


def test_a_connection_that_fails_is_tried_again_then_reported(sftp_config, graph, now):
    archive_some(sftp_config, graph, now)
    hang_up = HangUp()
    try:
        with pytest.raises(DeliveryError, match="SFTP connection to 127.0.0.1") as caught:
            deliver(dataclasses.replace(sftp_config, sftp_port=hang_up.port))
    finally:
        hang_up.close()
    assert hang_up.accepted == SFTP_CONNECT_ATTEMPTS
    assert "1 DB(s) with 4 file(s) still queued" in str(caught.value)


def test_a_refused_host_key_is_not_tried_again(sftp_config, sftp_server, graph, now, tmp_path):
    archive_some(sftp_config, graph, now)
    stranger = dataclasses.replace(
        sftp_config, sftp_host_key="", sftp_known_hosts=str(tmp_path / "empty_known_hosts")
    )
    with pytest.raises(DeliveryError, match="is not known"):
        deliver(stranger)
    assert sftp_server.switches.connections == 1


def test_connection_dropped_mid_upload(sftp_config, sftp_server, graph, now):
    archive_some(sftp_config, graph, now)
    sftp_server.switches.drop_after_bytes = 2500
    with pytest.raises(DeliveryError):
        deliver(sftp_config)
    assert sftp_server.switches.drops == 1
    expected = local_expected(sftp_config)
    for path, size in remote_files(sftp_server.root).items():
        if not Path(path).name.startswith("."):
            assert expected[path] == size, f"{path} is under its final name but incomplete"
    assert len(queued(sftp_config)) == 1
    deliver(sftp_config)
    landed = {
        k: v for k, v in remote_files(sftp_server.root).items() if not Path(k).name.startswith(".")
    }
    assert landed == expected


def test_unknown_host_key_is_refused_with_the_line_to_add(
    sftp_config, sftp_server, graph, now, tmp_path
):
    archive_some(sftp_config, graph, now)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config = dataclasses.replace(sftp_config, sftp_known_hosts=str(empty))
    with pytest.raises(DeliveryError) as caught:
        deliver(config)
    message = str(caught.value)
    assert "not known" in message and sftp_server.fingerprint in message
    assert sftp_server.known_hosts_line().strip() in message
    assert remote_files(sftp_server.root) == {}
    assert sftp_server.switches.bytes_written == 0


def test_mismatched_host_key_is_refused_loudly(sftp_config, sftp_server, graph, now, tmp_path):
    import asyncssh

    archive_some(sftp_config, graph, now)
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sftp_server.port} {impostor[0]} {impostor[1]}\n")
    with pytest.raises(DeliveryError, match="HOST KEY MISMATCH"):
        deliver(dataclasses.replace(sftp_config, sftp_known_hosts=str(wrong)))
    pinned = dataclasses.replace(sftp_config, sftp_host_key="SHA256:" + "A" * 43)
    with pytest.raises(DeliveryError, match="HOST KEY MISMATCH"):
        deliver(pinned)
    assert remote_files(sftp_server.root) == {}
    assert len(queued(sftp_config)) == 1


def test_pinned_fingerprint_is_accepted(sftp_config, sftp_server, graph, now, tmp_path):
    archive_some(sftp_config, graph, now)
    pinned = dataclasses.replace(
        sftp_config, sftp_host_key=sftp_server.fingerprint, sftp_known_hosts=str(tmp_path / "none")
    )
    assert deliver(pinned).delivered_dbs == 1


def test_wrong_password(sftp_config, sftp_server, graph, now):
    archive_some(sftp_config, graph, now)
    with pytest.raises(DeliveryError, match="refused: check SFTP_ID and SFTP_PW") as caught:
        deliver(dataclasses.replace(sftp_config, sftp_password="wrong-password-x"))
    assert "wrong-password-x" not in str(caught.value)
    assert len(queued(sftp_config)) == 1


def test_remote_folder_not_writable(sftp_config, sftp_server, graph, now):
    archive_some(sftp_config, graph, now)
    sftp_server.switches.readonly_below = "archive"
    with pytest.raises(DeliveryError, match="Cannot create /archive") as caught:
        deliver(sftp_config)
    assert "SFTP_BASE_DIR" in str(caught.value)
    assert len(queued(sftp_config)) == 1


def test_disk_full_keeps_the_queue_and_leaves_no_final_file(sftp_config, sftp_server, graph, now):
    archive_some(sftp_config, graph, now)
    sftp_server.switches.disk_full = True
    with pytest.raises(DeliveryError, match="No space left|out of disk space"):
        deliver(sftp_config)
    assert not [p for p in remote_files(sftp_server.root) if not Path(p).name.startswith(".")]
    assert len(queued(sftp_config)) == 1
    sftp_server.switches.disk_full = False
    deliver(sftp_config)
    assert queued(sftp_config) == []


def test_plain_rename_when_posix_rename_is_missing(sftp_config, sftp_server, graph, now):
    archive_some(sftp_config, graph, now)
    sftp_server.switches.no_posix_rename = True
    # A stale, shorter copy under a final name must be replaced, not kept.
    db_relative = queued(sftp_config)[0]
    stale = sftp_server.root / "archive" / db_relative
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    deliver(sftp_config)
    assert remote_files(sftp_server.root) == local_expected(sftp_config)


needs_sshd = pytest.mark.skipif(
    sshd_path() is None, reason="OpenSSH sshd is not installed (.ci/run installs it with apt-get)"
)


@pytest.fixture
def sshd(tmp_path):
    server = SshdServer(tmp_path / "sshd").start()
    yield server
    server.stop()


@needs_sshd
def test_openssh_sshd_key_auth_and_pinned_fingerprint(graph, data_dir, sshd, tmp_path, now):
    target = tmp_path / "sshd-target"
    config = config_from_values({**graph.env_values(data_dir), **sshd.env(target)})
    archive_some(config, graph, now)
    archive_some(config, graph, now, offset=5)
    assert deliver(config).delivered_dbs == 2
    landed = {
        p.relative_to(target).as_posix(): p.stat().st_size for p in target.rglob("*") if p.is_file()
    }
    assert {f"archive/{k}": v for k, v in landed.items()} == local_expected(config)


@needs_sshd
def test_openssh_read_only_server_keeps_the_queue(graph, data_dir, tmp_path, now):
    server = SshdServer(tmp_path / "sshd-ro", read_only=True).start()
    try:
        config = config_from_values(
            {**graph.env_values(data_dir), **server.env(tmp_path / "ro-target")}
        )
        archive_some(config, graph, now)
        with pytest.raises(DeliveryError, match="Cannot create|failed"):
            deliver(config)
        assert len(queued(config)) == 1
        assert not (tmp_path / "ro-target").exists()
    finally:
        server.stop()


@needs_sshd
def test_ssh_rsa_known_hosts_line_from_the_hint_works(graph, data_dir, tmp_path, now):
    """OpenSSH refuses SHA-1 signatures, and a known_hosts line says ssh-rsa for every RSA key:
    the client must ask for rsa-sha2-512/256 as OpenSSH does. The line the tool prints for an
    unknown host is the line that then works."""
    server = SshdServer(tmp_path / "sshd-rsa", host_key_type="rsa").start()
    try:
        known_hosts = tmp_path / "known_hosts"
        values = {**graph.env_values(data_dir), **server.env(tmp_path / "rsa-target")}
        values.update(SFTP_HOST_KEY="", SFTP_KNOWN_HOSTS=str(known_hosts))
        config = config_from_values(values)
        archive_some(config, graph, now)
        with pytest.raises(DeliveryError, match="is not known") as caught:
            deliver(config)
        line = next(x for x in str(caught.value).splitlines() if x.startswith("[127.0.0.1]"))
        known_hosts.write_text(line + "\n")
        assert deliver(config).delivered_dbs == 1
    finally:
        server.stop()


def test_async_server_fixture_is_independent(tmp_path):
    server = AsyncSftpServer(tmp_path / "root").start()
    try:
        assert server.port > 0 and server.fingerprint.startswith("SHA256:")
    finally:
        server.stop()


HOSTILE = [
    ("../outside", "secret.txt"),
    ("/etc", "passwd"),
    ("c:/Windows", "win.ini"),
    ("2025_06_30\\..\\..", "secret.txt"),
    ("2025_06_30/attach", "../../../secret.txt"),
    ("", "secret.txt"),
]


@pytest.mark.parametrize(("folder", "name"), HOSTILE)
def test_paths_read_back_from_a_db_stay_inside_data_dir(
    sftp_config, sftp_server, graph, now, tmp_path, folder, name
):
    """A DB edited (or forged) to name a file outside DATA_DIR: that DB is refused and
    reported, nothing of it is sent; the DBs after it are still delivered."""
    import sqlite3

    (tmp_path / "secret.txt").write_text("not archive data")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("not archive data")
    forged = archive_some(sftp_config, graph, now, count=1).db_path
    with sqlite3.connect(forged) as conn:
        conn.execute(
            "UPDATE fund_mail_attach SET save_folder = ?, phy_file_name = ?", (folder, name)
        )
    conn.close()
    good = archive_some(sftp_config, graph, now, count=1, offset=5).db_path
    with pytest.raises(DeliveryError, match="points outside DATA_DIR: refused"):
        deliver(sftp_config)
    landed = remote_files(sftp_server.root)
    assert not [p for p in landed if "secret" in p or forged.name in p]
    assert any(p.endswith(good.name) for p in landed), "the next DB still goes"
    assert queued(sftp_config) == [forged.relative_to(sftp_config.data_dir).as_posix()]


def test_remote_sweep_removes_only_our_partials(sftp_config, sftp_server, graph, now):
    result = archive_some(sftp_config, graph, now, count=1)
    day = sftp_server.root / "archive" / result.db_path.parent.name
    day.mkdir(parents=True)
    ours, theirs = ".fm_x.db.0123abcd.part", [".notes.part", "report.part", ".a.db.xyz.part"]
    for name in [ours, *theirs]:
        (day / name).write_text("x")
    deliver(sftp_config)
    left = {p.name for p in day.iterdir()}
    assert ours not in left and set(theirs) <= left
