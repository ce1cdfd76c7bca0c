"""Shared fixtures: a running Graph emulator trusted through REQUESTS_CA_BUNDLE, a DATA_DIR,
a .env pointing at both, and helpers to run the real CLI."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fund_mail.config import Config, config_from_values
from fund_mail.emulator import GraphEmulator
from tests.helpers import in_ci
from tests.imap_server import DovecotServer, TokenIntrospection
from tests.sftp_servers import AsyncSftpServer

pytest_plugins = ["pytester"]  # tests/test_ci_skips.py runs small pytest sessions

# In CI (CI=true) a skipped test fails the run, unless it is listed here with the reason it
# cannot run there. Everything else a test needs (sshd, readpst, pypff, the PST fixtures, the
# built executables) CI installs or builds, so a skip would hide a broken build.
ALLOWED_SKIPS_IN_CI = {
    "tests/test_config.py::test_unwritable_data_dir": "needs a non-root user: CI runs as root, "
    "who may write anywhere; tests/reliability/test_bad_input.py::test_data_dir_not_writable "
    "covers the same check as root",
}


def _forbid_skip_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    if report.nodeid.split("[")[0] in ALLOWED_SKIPS_IN_CI:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = (
        f"Skipped in CI ({reason}). In CI a test may skip only when ALLOWED_SKIPS_IN_CI in "
        "tests/conftest.py lists it with its reason; install or build what it needs instead."
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    _forbid_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """A whole module skipped at import (pytest.skip(allow_module_level=True), importorskip)."""
    outcome = yield
    _forbid_skip_in_ci(outcome.get_result())


@pytest.fixture
def graph(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[GraphEmulator]:
    with GraphEmulator(tls_dir=tmp_path / "tls") as emulator:
        # These machines set REQUESTS_CA_BUNDLE; requests must trust the emulator's CA instead.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.tls.ca_cert))
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        yield emulator


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def config(graph: GraphEmulator, data_dir: Path) -> Config:
    return config_from_values(graph.env_values(data_dir, RETRY_BACKOFF="0.05"))


@pytest.fixture
def env_file(graph: GraphEmulator, data_dir: Path, tmp_path: Path) -> Path:
    return graph.write_env(tmp_path / ".env", data_dir, RETRY_BACKOFF="0.05")


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def sftp_server(tmp_path: Path) -> Iterator[AsyncSftpServer]:
    server = AsyncSftpServer(tmp_path / "sftp-root").start()
    yield server
    server.stop()


@pytest.fixture
def sftp_config(graph: GraphEmulator, data_dir: Path, sftp_server, tmp_path: Path) -> Config:
    """fund_mail configured for the emulator and the in-process SFTP server."""
    values = graph.env_values(data_dir, RETRY_BACKOFF="0.05")
    values.update(sftp_server.env(tmp_path / "known_hosts"))
    return config_from_values(values)


@pytest.fixture
def dovecot(graph: GraphEmulator) -> Iterator[DovecotServer]:
    """Dovecot for the emulator's mailbox: password logins, and XOAUTH2 with the emulator's
    tokens (checked through an introspection endpoint that asks the emulator)."""
    user = graph.mailbox.address
    introspection = TokenIntrospection(
        lambda token: user if graph._token_valid(token) else None
    ).start()
    server = DovecotServer(user, "imap-Passw0rd", introspection.url, tls=graph.tls)
    server.introspection = introspection
    try:
        yield server.start()
    finally:
        server.stop()
        introspection.stop()


@pytest.fixture(autouse=True)
def collector_thresholds() -> Iterator[None]:
    """Commands raise the garbage collector's threshold for their process; a test that runs one
    in this process gives the next test the interpreter's own."""
    import gc

    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)
