"""Delivery of archive DBs and their attachments to the SFTP server, from the local outbox.

Every file goes up under a temporary name, is checked by size, then renamed into place, so a
final name on the server always means a complete file. Attachments go first and the DB last:
a DB on the server means all of its files are there. Nothing leaves the outbox until it landed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import posixpath
import re
import socket
import sqlite3
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import paramiko

from fund_mail import crashpoints
from fund_mail.archive.fsutil import RunLock, command_lock
from fund_mail.archive.index import ArchiveIndex, FileRecord
from fund_mail.archive.store import files_of
from fund_mail.config import Config
from fund_mail.errors import DeliveryError, LockedError, UnsafePath
from fund_mail.retry import RetryPolicy

log = logging.getLogger(__name__)

# .<name>.<8 hex>.part: the only shape of temporary name this tool uploads under.
REMOTE_PARTIAL_RE = re.compile(r"^\..+\.[0-9a-f]{8}\.part$")


def remote_partial_name(remote: str) -> str:
    name = f".{posixpath.basename(remote)}.{uuid.uuid4().hex[:8]}.part"
    return posixpath.join(posixpath.dirname(remote), name)


# A server that cannot be reached, or drops the connection before the SSH session is set up, is
# tried again a few times in the run (backoff: RETRY_BACKOFF); the outbox keeps the rest for the
# next run. A refused host key or login is never retried: trying again cannot fix it.
SFTP_CONNECT_ATTEMPTS = 3


class ServerUnreachable(DeliveryError):
    """The SFTP server could not be reached, or the SSH session could not be set up."""


def fingerprint(key: paramiko.PKey) -> str:
    """SHA256:... exactly as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _known_hosts_path(config: Config) -> Path:
    return Path(config.sftp_known_hosts or Path.home() / ".ssh" / "known_hosts")


def _load_known_hosts(path: Path) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    if path.is_file():
        try:
            keys.load(str(path))
        except (OSError, paramiko.SSHException) as e:
            raise DeliveryError(f"Cannot read the known_hosts file {path}: {e}") from e
    return keys


def verify_host_key(config: Config, key: paramiko.PKey) -> None:
    """Refuse an unknown or changed server key before anything is sent."""
    offered = fingerprint(key)
    name = known_hosts_name(config.sftp_host, config.sftp_port)
    if config.sftp_host_key:
        if offered != config.sftp_host_key:
            raise DeliveryError(
                f"SFTP HOST KEY MISMATCH for {name}: the server offered {key.get_name()} "
                f"{offered}, but SFTP_HOST_KEY pins {config.sftp_host_key}. Someone may be "
                "intercepting the connection, or the server's key was replaced. Nothing was sent. "
                "Confirm the new fingerprint with the server's administrator before changing "
                "SFTP_HOST_KEY."
            )
        return
    path = _known_hosts_path(config)
    entries = _load_known_hosts(path).lookup(name) or {}
    known = entries.get(key.get_name())
    if known is None and entries:
        # The host is known under other key types only: still a change worth refusing loudly.
        raise DeliveryError(
            f"SFTP HOST KEY MISMATCH for {name}: {path} lists {', '.join(entries)} keys, but the "
            f"server offered {key.get_name()} {offered}. Nothing was sent."
        )
    if known is None:
        raise DeliveryError(
            f"The SFTP server {name} is not known: it offered {key.get_name()} key {offered}. "
            "Nothing was sent. After confirming this fingerprint with the server's "
            f"administrator, add this line to {path}:\n"
            f"{name} {key.get_name()} {key.get_base64()}\n"
            f"or set SFTP_HOST_KEY={offered} in .env."
        )
    if known != key:
        raise DeliveryError(
            f"SFTP HOST KEY MISMATCH for {name}: the server offered {key.get_name()} {offered}, "
            f"but {path} has {fingerprint(known)}. Someone may be intercepting the connection, or "
            "the server's key was replaced. Nothing was sent."
        )


# known_hosts names an RSA key "ssh-rsa" whatever signature it makes; servers (OpenSSH 8.8+)
# and paramiko refuse the SHA-1 "ssh-rsa" signature, so ask for the SHA-2 ones, as OpenSSH does.
SIGNATURES_OF = {"ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256"]}


def _preferred_key_types(config: Config) -> list[str]:
    """Ask for the key types known_hosts has, as OpenSSH does, so a known host is not refused
    merely because the server would have preferred another of its keys."""
    if config.sftp_host_key:
        return []
    name = known_hosts_name(config.sftp_host, config.sftp_port)
    known = (_load_known_hosts(_known_hosts_path(config)).lookup(name) or {}).keys()
    return [signature for kind in known for signature in SIGNATURES_OF.get(kind, [kind])]


def _private_key(config: Config) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(
            config.sftp_key_file, password=config.sftp_key_passphrase or None
        )
    except (paramiko.SSHException, OSError, ValueError) as e:
        raise DeliveryError(
            f"SFTP_KEY_FILE {config.sftp_key_file} cannot be used ({type(e).__name__}): check "
            "the file and SFTP_KEY_PASSPHRASE."
        ) from e


def connect(config: Config) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    """Connect, verify the host key, then authenticate; raise DeliveryError with the fix."""
    policy = RetryPolicy(attempts=SFTP_CONNECT_ATTEMPTS, backoff=config.retry_backoff)
    return policy.call(
        lambda: _connect_once(config),
        ServerUnreachable,
        f"SFTP connection to {config.sftp_host}:{config.sftp_port}",
    )


def _connect_once(config: Config) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    where = f"{config.sftp_host}:{config.sftp_port}"
    try:
        sock = socket.create_connection(
            (config.sftp_host, config.sftp_port), timeout=config.sftp_timeout
        )
    except OSError as e:
        raise ServerUnreachable(f"Cannot reach the SFTP server {where}: {e}") from e
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.auth_timeout = config.sftp_timeout
    try:
        preferred = _preferred_key_types(config)
        options = transport.get_security_options()
        usable = [t for t in options.key_types if t in preferred]
        if usable:  # none usable (e.g. only ssh-dss known): verify_host_key refuses it clearly
            options.key_types = usable
        transport.start_client(timeout=config.sftp_timeout)
        verify_host_key(config, transport.get_remote_server_key())
        if config.sftp_key_file:
            transport.auth_publickey(config.sftp_user, _private_key(config))
        else:
            transport.auth_password(config.sftp_user, config.sftp_password)
        sftp = paramiko.SFTPClient.from_transport(transport)
        channel = sftp.get_channel() if sftp is not None else None
        if sftp is None or channel is None:
            raise DeliveryError(f"The SFTP server {where} refused the sftp subsystem.")
        channel.settimeout(config.sftp_timeout)
        return transport, sftp
    except DeliveryError:
        transport.close()
        raise
    except paramiko.AuthenticationException as e:
        transport.close()
        raise DeliveryError(
            f"SFTP login as {config.sftp_user!r} on {where} was refused: check SFTP_ID and "
            f"{'SFTP_KEY_FILE' if config.sftp_key_file else 'SFTP_PW'}."
        ) from e
    except (paramiko.SSHException, OSError, EOFError) as e:
        transport.close()
        raise ServerUnreachable(
            f"SFTP connection to {where} failed: {type(e).__name__}: {e}"
        ) from e
    except BaseException:
        transport.close()
        raise


@dataclass
class DeliveryReport:
    delivered_dbs: int = 0
    delivered_files: int = 0
    bytes: int = 0
    queued_dbs: int = 0
    queued_files: int = 0

    def summary(self) -> str:
        text = f"delivered {self.delivered_dbs} DB(s) and {self.delivered_files} file(s)"
        if self.queued_dbs:
            text += f"; {self.queued_dbs} DB(s) with {self.queued_files} file(s) still queued"
        return text


class Uploader:
    def __init__(self, config: Config, sftp: paramiko.SFTPClient) -> None:
        self.config = config
        self.sftp = sftp
        self._made: set[str] = set()

    def makedirs(self, remote_dir: str) -> None:
        if remote_dir in self._made or remote_dir in ("", "/"):
            return
        try:
            self.sftp.stat(remote_dir)
            self._sweep_partials(remote_dir)
        except FileNotFoundError:
            self.makedirs(posixpath.dirname(remote_dir))
            try:
                self.sftp.mkdir(remote_dir)
            except OSError as e:
                if self._is_dir(remote_dir):
                    return self._made.add(remote_dir)  # another mailbox's delivery made it first
                raise DeliveryError(
                    f"Cannot create {remote_dir} on the SFTP server ({e}): check SFTP_BASE_DIR "
                    "and that the account may write there."
                ) from e
        self._made.add(remote_dir)

    def _is_dir(self, remote_dir: str) -> bool:
        try:
            return stat.S_ISDIR(self.sftp.stat(remote_dir).st_mode or 0)
        except OSError:
            return False

    def _sweep_partials(self, remote_dir: str) -> None:
        """Remove .part files that killed uploads of ours left behind, by their exact shape
        only. Safe: we hold the delivery lock, so no upload of ours is in flight."""
        for name in self.sftp.listdir(remote_dir):
            if REMOTE_PARTIAL_RE.match(name):
                self._remove_quietly(posixpath.join(remote_dir, name))

    def put(self, local: Path, remote: str) -> int:
        """Upload under a temporary name, check the size, rename into place. Idempotent."""
        size = local.stat().st_size
        self.makedirs(posixpath.dirname(remote))
        try:
            if self.sftp.stat(remote).st_size == size:
                return 0  # already delivered by an earlier, interrupted run
        except FileNotFoundError:
            pass
        with open(local, "rb") as source:
            return self._send(source, size, local.name, remote)

    def put_bytes(self, data: bytes, name: str, remote: str) -> int:
        """Replace remote with data the same way, even when a file of that size is there."""
        self.makedirs(posixpath.dirname(remote))
        return self._send(io.BytesIO(data), len(data), name, remote)

    def _send(self, source: IO[bytes], size: int, name: str, remote: str) -> int:
        temporary = remote_partial_name(remote)

        def progress(sent: int, total: int) -> None:
            if total and sent >= total // 2:
                crashpoints.reached("upload-partial")

        try:
            self.sftp.putfo(source, temporary, file_size=size, callback=progress, confirm=False)
            landed = self.sftp.stat(temporary).st_size
            if landed != size:
                raise DeliveryError(
                    f"{remote}: {landed} bytes arrived, {size} were sent (the server may be out "
                    "of disk space or refusing writes)"
                )
            self._rename(temporary, remote)
        except OSError as e:
            self._remove_quietly(temporary)
            raise DeliveryError(f"Upload of {name} to {remote} failed: {e}") from e
        except BaseException:
            self._remove_quietly(temporary)
            raise
        return size

    def _rename(self, temporary: str, remote: str) -> None:
        try:
            self.sftp.posix_rename(temporary, remote)
        except OSError:
            # No posix-rename extension: a plain SFTP rename refuses to overwrite.
            self._remove_quietly(remote)
            self.sftp.rename(temporary, remote)

    def _remove_quietly(self, remote: str) -> None:
        try:
            self.sftp.remove(remote)
        except (OSError, paramiko.SSHException, EOFError):
            pass


def deliver_queue(config: Config, index: ArchiveIndex) -> DeliveryReport:
    """Deliver every queued DB, oldest first; raise DeliveryError (queue kept) on failure."""
    report = DeliveryReport()
    lock = RunLock(command_lock(config.data_dir, "fund_mail_delivery"), "delivery")
    try:
        lock.__enter__()
    except LockedError:
        # That run re-reads the queue until it is empty, so it normally takes our DB too;
        # if it has just finished, the next scheduled run does.
        log.info("Another run is delivering the queue; this run's DB stays queued for it")
        report.queued_dbs = len(index.queued())
        return report
    try:
        waiting = index.queued()
        if not waiting and not manifests_to_deliver(index):
            return report
        try:
            transport, sftp = connect(config)
        except DeliveryError as e:
            if waiting:
                index.mark_failed(waiting[0], str(e))
            raise
        try:
            uploader = Uploader(config, sftp)
            done: set[str] = set()
            refused: list[UnsafePath] = []
            while pending := [d for d in index.queued() if d not in done]:
                for db_relative in pending:
                    done.add(db_relative)
                    try:
                        _deliver_one(config, index, uploader, db_relative, report)
                    except UnsafePath as e:
                        log.error("%s", e)
                        refused.append(e)
            _deliver_manifests(config, index, uploader, report)
        finally:
            transport.close()
        if refused:
            raise DeliveryError("\n".join(str(e) for e in refused))
        return report
    except DeliveryError as e:
        queued = index.queued()
        report.queued_dbs = len(queued)
        report.queued_files = sum(_file_count(config.data_dir, d) for d in queued)
        raise DeliveryError(
            f"{e}\nDelivery stopped: {report.summary()}. The archive is safe "
            "locally and the next run delivers the queue."
        ) from e
    finally:
        lock.__exit__(None, None, None)


def _file_count(data_dir: Path, db_relative: str) -> int:
    try:
        return len(files_of(data_dir, db_relative))
    except (DeliveryError, OSError, sqlite3.Error):
        return 1


def _deliver_one(
    config: Config,
    index: ArchiveIndex,
    uploader: Uploader,
    db_relative: str,
    report: DeliveryReport,
) -> None:
    try:
        files = files_of(config.data_dir, db_relative)
        for local, relative in files:
            report.bytes += uploader.put(local, posixpath.join(config.sftp_base_dir, relative))
    except DeliveryError as e:
        index.mark_failed(db_relative, str(e))
        raise
    except (OSError, sqlite3.Error, paramiko.SSHException, EOFError) as e:
        index.mark_failed(db_relative, str(e))
        raise DeliveryError(f"Delivery of {db_relative} failed: {type(e).__name__}: {e}") from e
    landed = []
    for local, relative in files:
        info = local.stat()
        landed.append((relative, info.st_size, info.st_mtime_ns))
    index.mark_delivered(db_relative, landed)
    report.delivered_dbs += 1
    report.delivered_files += len(files)
    log.info("Delivered %s with %d attachment file(s)", db_relative, len(files) - 1)


def manifests_to_deliver(index: ArchiveIndex) -> list[str]:
    """Days whose manifest changed since it was delivered, oldest first, stopping at the first
    day that still has a DB queued: a manifest goes up only after the files it lists, and a
    later day's only after the day it is chained to."""
    queued = index.queued_days()
    days = []
    for day, record in index.manifests().items():
        if day in queued:
            break
        if record.delivered_sha256 != record.sha256:
            days.append(day)
    return days


def _deliver_manifests(
    config: Config, index: ArchiveIndex, uploader: Uploader, report: DeliveryReport
) -> None:
    from fund_mail.archive.manifest import manifest_relative, sha256_bytes

    for day in manifests_to_deliver(index):
        relative = manifest_relative(day)
        local = config.data_dir / relative
        try:
            data = local.read_bytes()
            uploader.put_bytes(data, local.name, posixpath.join(config.sftp_base_dir, relative))
        except (OSError, paramiko.SSHException, EOFError) as e:
            raise DeliveryError(f"Delivery of {relative} failed: {type(e).__name__}: {e}") from e
        index.mark_manifest_delivered(day, sha256_bytes(data))
        report.bytes += len(data)
        log.info("Delivered %s", relative)


class SftpTree:
    """The server's copy of the archive, for `--verify --remote` (see archive/manifest.Tree)."""

    def __init__(self, sftp: paramiko.SFTPClient, base_dir: str) -> None:
        self.sftp = sftp
        self.base_dir = base_dir

    def _path(self, relative: str) -> str:
        return posixpath.join(self.base_dir, relative)

    def days(self) -> list[str]:
        from fund_mail.archive.manifest import DAY_RE

        try:
            entries = self.sftp.listdir_attr(self.base_dir)
        except FileNotFoundError:
            return []
        return sorted(
            e.filename for e in entries if DAY_RE.match(e.filename) and stat.S_ISDIR(e.st_mode or 0)
        )

    def files(self, day: str) -> dict[str, int]:
        found: dict[str, int] = {}
        folders = [day]
        while folders:
            folder = folders.pop()
            for entry in self.sftp.listdir_attr(self._path(folder)):
                if entry.filename.startswith("."):
                    continue
                relative = f"{folder}/{entry.filename}"
                if stat.S_ISDIR(entry.st_mode or 0):
                    folders.append(relative)
                else:
                    found[relative] = entry.st_size or 0
        return found

    def size(self, relative: str) -> int | None:
        try:
            return self.sftp.stat(self._path(relative)).st_size
        except FileNotFoundError:
            return None

    def read(self, relative: str) -> bytes:
        with self.sftp.open(self._path(relative), "rb") as remote:
            return remote.read()

    def sha256(self, relative: str) -> str:
        digest = hashlib.sha256()
        with self.sftp.open(self._path(relative), "rb") as remote:
            remote.prefetch()
            while block := remote.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()


class ReadBack:
    """Retention's read-back over one SFTP connection, opened when first needed; a server that
    cannot be reached confirms nothing."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._transport: paramiko.Transport | None = None
        self._tree: SftpTree | None = None
        self._failed = False

    def __call__(self, records: list[FileRecord]) -> set[str]:
        if self._failed:
            return set()
        try:
            if self._tree is None:
                self._transport, sftp = connect(self.config)
                self._tree = SftpTree(sftp, self.config.sftp_base_dir)
            confirmed = set()
            for record in records:
                size = self._tree.size(record.path)
                if size == record.size and self._tree.sha256(record.path) == record.sha256:
                    confirmed.add(record.path)
            return confirmed
        except (DeliveryError, OSError, paramiko.SSHException, EOFError) as e:
            log.info("Cannot read the server's copies back (%s); nothing is removed for it", e)
            self._failed = True
            return set()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
