"""Real SFTP servers on 127.0.0.1 for the delivery tests.

AsyncSftpServer: asyncssh's server in this process (password auth, chrooted), with switches that
drop the connection mid-upload, fail writes like a full disk, refuse writes below a folder, or
hide the posix-rename extension. SshdServer: OpenSSH's sshd with internal-sftp, public-key auth.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh


@dataclass
class Switches:
    drop_after_bytes: int | None = None  # abort the connection once this many bytes arrived
    disk_full: bool = False
    readonly_below: str | None = None  # refuse writes and mkdirs under this folder name
    no_posix_rename: bool = False
    bytes_written: int = 0
    drops: int = 0
    connections: int = 0  # SSH connections accepted
    uploads_completed: list[str] = field(default_factory=list)


class _Sftp(asyncssh.SFTPServer):
    def __init__(self, chan, root: Path, switches: Switches) -> None:
        super().__init__(chan, chroot=str(root))
        self.switches = switches

    def _refused(self, path: bytes) -> bool:
        below = self.switches.readonly_below
        return below is not None and f"/{below}".encode() in b"/" + path

    def open(self, path, pflags, attrs):
        if pflags & asyncssh.FXF_WRITE and self._refused(path):
            raise asyncssh.SFTPPermissionDenied("Permission denied")
        return super().open(path, pflags, attrs)

    def mkdir(self, path, attrs):
        if self._refused(path):
            raise asyncssh.SFTPPermissionDenied("Permission denied")
        return super().mkdir(path, attrs)

    def write(self, file_obj, offset, data):
        switches = self.switches
        if switches.disk_full:
            raise asyncssh.SFTPFailure("No space left on device")
        switches.bytes_written += len(data)
        if (
            switches.drop_after_bytes is not None
            and switches.bytes_written >= switches.drop_after_bytes
        ):
            switches.drop_after_bytes = None
            switches.drops += 1
            self.connection.abort()
            raise asyncssh.SFTPConnectionLost("dropped by the test")
        return super().write(file_obj, offset, data)

    def posix_rename(self, oldpath, newpath):
        if self.switches.no_posix_rename:
            raise asyncssh.SFTPOpUnsupported("posix-rename not supported")
        self.switches.uploads_completed.append(newpath.decode())
        return super().posix_rename(oldpath, newpath)

    def rename(self, oldpath, newpath):
        self.switches.uploads_completed.append(newpath.decode())
        return super().rename(oldpath, newpath)


class _Auth(asyncssh.SSHServer):
    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return (username, password) == (self.user, self.password)


class AsyncSftpServer:
    def __init__(self, root: Path, user: str = "fundsftp", password: str = "sftp-Pass-42") -> None:
        self.root, self.user, self.password = root, user, password
        self.switches = Switches()
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def fingerprint(self) -> str:
        return self.host_key.get_fingerprint("sha256")

    def known_hosts_line(self) -> str:
        public = self.host_key.export_public_key().decode().split()[:2]
        return f"[127.0.0.1]:{self.port} {' '.join(public)}\n"

    def start(self) -> AsyncSftpServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread.start()

        async def listen():
            return await asyncssh.listen(
                "127.0.0.1",
                self.port,
                server_host_keys=[self.host_key],
                server_factory=self._session,
                sftp_factory=lambda chan: _Sftp(chan, self.root, self.switches),
                allow_scp=False,
            )

        self._server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _session(self) -> _Auth:
        self.switches.connections += 1
        return _Auth(self.user, self.password)

    def stop(self) -> None:
        """Close the listener and every session on the server's own loop (asyncio objects are
        not thread-safe), then stop the loop."""

        async def shutdown() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            if self._server is not None:
                self._server.close()
                try:
                    await asyncio.wait_for(self._server.wait_closed(), 5)
                except TimeoutError:
                    pass

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._server = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def env(self, known_hosts: Path, base_dir: str = "/archive", **overrides: str) -> dict:
        known_hosts.write_text(self.known_hosts_line())
        values = {
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "SFTP_ID": self.user,
            "SFTP_PW": self.password,
            "SFTP_BASE_DIR": base_dir,
            "SFTP_KNOWN_HOSTS": str(known_hosts),
            "SFTP_TIMEOUT": "10",
        }
        values.update(overrides)
        return values


def sshd_path() -> str | None:
    for candidate in (shutil.which("sshd"), "/usr/sbin/sshd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SshdServer:
    """OpenSSH's sshd on a free port with a temporary host key and configuration."""

    def __init__(self, workdir: Path, read_only: bool = False, host_key_type: str = "ed25519"):
        self.workdir = workdir
        self.read_only = read_only
        self.host_key_type = host_key_type
        self.user = getpass.getuser()
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> SshdServer:
        binary = sshd_path()
        self.workdir.mkdir(parents=True, exist_ok=True)
        w = self.workdir
        for name, kind in (("host_key", self.host_key_type), ("client_ed25519", "ed25519")):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(w / name)], check=True
            )
        (w / "authorized_keys").write_text((w / "client_ed25519.pub").read_text())
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        (w / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {w / 'host_key'}\n"
            f"PidFile {w / 'sshd.pid'}\nAuthorizedKeysFile {w / 'authorized_keys'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nPermitRootLogin yes\nStrictModes no\nUsePAM no\n"
            "Subsystem sftp internal-sftp\n"
            f"ForceCommand internal-sftp{' -R' if self.read_only else ''}\n"
        )
        self.process = subprocess.Popen(
            [binary, "-D", "-e", "-f", str(w / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=open(w / "sshd.log", "wb"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((w / "sshd.log").read_text(errors="replace"))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def fingerprint(self) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-lf", str(self.workdir / "host_key.pub")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split()[1]

    def env(self, base_dir: Path, **overrides: str) -> dict:
        values = {
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "SFTP_ID": self.user,
            "SFTP_KEY_FILE": str(self.workdir / "client_ed25519"),
            "SFTP_BASE_DIR": str(base_dir),
            "SFTP_HOST_KEY": self.fingerprint(),
            "SFTP_TIMEOUT": "10",
        }
        values.update(overrides)
        return values
