"""`fund_mail_once --check`: a green/red checklist of the whole setup. It changes no state:
no cursor, no index, no archive; the SFTP write test removes its own file."""

from __future__ import annotations

import os
import posixpath
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from fund_mail.config import Config, writable_dir_problem
from fund_mail.delivery import connect
from fund_mail.errors import ExitCode, FundMailError
from fund_mail.graph.auth import TokenProvider
from fund_mail.graph.client import GraphClient


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    exit_code: int = 0


def _step(name: str, action: Callable[[], str]) -> Check:
    try:
        return Check(name, True, action())
    except FundMailError as e:
        return Check(name, False, str(e), int(e.exit_code))
    except Exception as e:  # noqa: BLE001 - a checklist reports every failure, whatever it is
        return Check(name, False, f"{type(e).__name__}: {e}", int(ExitCode.RUN_FAILED))


def run_checks(config: Config) -> list[Check]:
    checks = [Check("configuration", True, f"{config.source} is valid")]

    def data_dir() -> str:
        problem = writable_dir_problem("DATA_DIR", str(config.data_dir))
        if problem:
            raise FundMailError(problem)
        return f"{config.data_dir} is writable" + (
            "" if config.data_dir.exists() else " (created by the first run)"
        )

    checks.append(_step("local archive folder", data_dir))
    if config.mail_source == "imap":
        checks.append(_step("IMAP sign-in and folders", lambda: _imap(config)))
    else:
        checks += _graph_checks(config)
    if config.upload_enabled:
        checks.append(_step("SFTP server, host key and write access", lambda: _sftp(config)))
    else:
        checks.append(Check("SFTP delivery", True, "off (HOST is empty): archives stay local"))
    return checks


def _imap(config: Config) -> str:
    from fund_mail.imap.client import ImapMailbox

    how = "password" if config.imap_password else "XOAUTH2 (app token)"
    with ImapMailbox(config) as mailbox:
        folders = mailbox.folders()
    sent = next((f.path for f in folders if f.is_sent), "none flagged \\Sent")
    return (
        f"signed in to {config.imap_host}:{config.imap_port} as {config.imap_user} with {how}; "
        f"{len(folders)} folder(s), Sent: {sent}"
    )


def _graph_checks(config: Config) -> list[Check]:
    checks: list[Check] = []
    signed_in: list[TokenProvider] = []

    def sign_in() -> str:
        tokens = TokenProvider(config)
        tokens.token()
        signed_in.append(tokens)
        return f"token for {config.graph_url}/.default from {config.authority_host}"

    checks.append(_step("sign-in (Entra app)", sign_in))
    if signed_in:

        def mailbox() -> str:
            client = GraphClient(config, signed_in[0], backoff=config.retry_backoff)
            newest = client.fetch_newest(1)
            if not newest:
                return f"{config.email_id} is readable (it holds no mail yet)"
            return (
                f"{config.email_id} is readable; newest mail received "
                f"{newest[0].get('receivedDateTime')}"
            )

        checks.append(_step("mailbox access (Mail.Read)", mailbox))
    else:
        checks.append(
            Check(
                "mailbox access (Mail.Read)", False, "skipped: sign-in failed", int(ExitCode.AUTH)
            )
        )
    return checks


def _sftp(config: Config) -> str:
    transport, sftp = connect(config)
    try:
        base = config.sftp_base_dir
        try:
            sftp.stat(base)
        except FileNotFoundError:
            return (
                f"connected as {config.sftp_user}, host key verified; {base} does not exist "
                "yet and the first upload creates it"
            )
        probe = posixpath.join(base, f".fund_mail_check_{uuid.uuid4().hex[:8]}")
        try:
            with sftp.open(probe, "wb") as handle:
                handle.write(b"fund_mail write check\n")
        except OSError as e:
            raise FundMailError(f"cannot write in {base} on the server: {e}") from e
        finally:
            try:
                sftp.remove(probe)
            except OSError:
                pass
        return f"connected as {config.sftp_user}, host key verified, {base} is writable"
    finally:
        transport.close()


def render(checks: list[Check], color: bool | None = None) -> str:
    if color is None:
        color = sys.stdout.isatty()
        if color and os.name == "nt":
            os.system("")  # turns on ANSI colours in the Windows console
    mark = {
        True: ("\x1b[32m[ OK ]\x1b[0m" if color else "[ OK ]"),
        False: ("\x1b[31m[FAIL]\x1b[0m" if color else "[FAIL]"),
    }
    lines = []
    for check in checks:
        detail = check.detail.replace("\n", "\n         ")
        lines.append(f"{mark[check.ok]} {check.name}: {detail}")
    failed = [c for c in checks if not c.ok]
    lines.append("All checks passed." if not failed else f"{len(failed)} check(s) failed.")
    return "\n".join(lines)


def exit_code(checks: list[Check]) -> int:
    return next((c.exit_code for c in checks if not c.ok), int(ExitCode.OK))
