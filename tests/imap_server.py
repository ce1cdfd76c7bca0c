"""A real Dovecot IMAP server for tests: a throwaway config, mail folder, user and CA.

Dovecot's master runs as whoever starts it. As root (CI), mail is owned by `nobody` (Dovecot
refuses mail access as uid 0) and its internal processes use the packaged `dovecot`/`dovenull`
users; as any other user everything runs as that user. Password logins are checked against a
passwd-file; XOAUTH2 tokens are checked by Dovecot's oauth2 passdb, which POSTs each token to
an RFC 7662 introspection endpoint that the tests start (see TokenIntrospection).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from fund_mail.emulator.tls import TlsFiles, make_tls_files

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
START_DEADLINE = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, deadline: float, process: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {deadline} s")


class TokenIntrospection:
    """An RFC 7662 token introspection endpoint on 127.0.0.1 (plain HTTP, as Dovecot calls it).

    `validate(token)` returns the user name the token belongs to, or None when it is not active.
    """

    def __init__(self, validate: Callable[[str], str | None]) -> None:
        self.validate = validate
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                outer.calls += 1
                user = outer.validate((form.get("token") or [""])[0])
                payload = {"active": True, "username": user} if user else {"active": False}
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/introspect"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> TokenIntrospection:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class DovecotServer:
    """Dovecot on two free local ports: implicit TLS (`port`) and STARTTLS (`starttls_port`)."""

    def __init__(
        self, user: str, password: str, introspection_url: str, tls: TlsFiles | None = None
    ) -> None:
        self.user = user
        self.password = password
        self.introspection_url = introspection_url
        # pytest's tmp_path is private to its owner; the mail user must be able to reach this.
        self.root = Path(tempfile.mkdtemp(prefix="fund-mail-dovecot-"))
        self.root.chmod(0o755)
        self.tls: TlsFiles = tls or make_tls_files(self.root / "tls")
        self.port = free_port()
        self.starttls_port = free_port()
        self.process: subprocess.Popen | None = None
        self.introspection: TokenIntrospection | None = None  # set by the fixture that owns it
        if os.geteuid() == 0:
            mail_user = pwd.getpwnam("nobody")
            internal, login = "dovecot", "dovenull"
        else:
            mail_user = pwd.getpwuid(os.geteuid())
            internal = login = mail_user.pw_name
        self.mail_uid, self.mail_gid = mail_user.pw_uid, mail_user.pw_gid
        self.internal_user, self.login_user = internal, login
        self.mail_dir = self.root / "mail"
        self.conf = self.root / "dovecot.conf"
        self.log = self.root / "dovecot.log"

    def _write_config(self) -> None:
        for name in ("run", "state"):
            (self.root / name).mkdir(mode=0o755)
        self.mail_dir.mkdir(mode=0o755)
        os.chown(self.mail_dir, self.mail_uid, self.mail_gid)
        passwd = self.root / "users"
        passwd.write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        oauth = self.root / "oauth2.conf.ext"
        oauth.write_text(
            f"introspection_mode = post\n"
            f"introspection_url = {self.introspection_url}\n"
            "force_introspection = yes\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
        )
        self.conf.write_text(
            f"""
protocols = imap
listen = 127.0.0.1
instance_name = fund-mail-test-{self.port}
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log}
default_internal_user = {self.internal_user}
default_internal_group = {self.internal_user}
default_login_user = {self.login_user}
first_valid_uid = {min(self.mail_uid, 500)}
first_valid_gid = 0
ssl = required
ssl_cert = <{self.tls.server_cert}
ssl_key = <{self.tls.server_key}
disable_plaintext_auth = yes
auth_mechanisms = plain login xoauth2 oauthbearer
mail_location = maildir:~/Maildir
mail_uid = {self.mail_uid}
mail_gid = {self.mail_gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {passwd}
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth}
}}
userdb {{
  driver = static
  args = uid={self.mail_uid} gid={self.mail_gid} home={self.mail_dir}/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
        )

    def start(self) -> DovecotServer:
        self._write_config()
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port(self.port, START_DEADLINE, self.process)
            wait_for_port(self.starttls_port, START_DEADLINE, self.process)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"Dovecot did not start: {e}\n{self.log_text()}") from e
        return self

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)


def imap_values(server: DovecotServer, data_dir: Path, **overrides: str) -> dict[str, str]:
    """.env keys for fund_mail against this server, signing in with the password."""
    values = {
        "SOURCE": "imap",
        "IMAP_HOST": "127.0.0.1",
        "IMAP_PORT": str(server.port),
        "IMAP_USER": server.user,
        "IMAP_PASSWORD": server.password,
        "DATA_DIR": str(data_dir),
        "LOG_DIR": str(data_dir / "logs"),
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def admin_client(server: DovecotServer):
    """A second, independent session to the test mailbox, for the tests' own changes."""
    import ssl

    from imapclient import IMAPClient

    context = ssl.create_default_context(cafile=str(server.tls.ca_cert))
    client = IMAPClient("127.0.0.1", port=server.port, ssl=True, ssl_context=context)
    client.login(server.user, server.password)
    return client
