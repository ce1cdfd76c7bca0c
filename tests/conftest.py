"""Shared fixtures: a running Graph emulator trusted through REQUESTS_CA_BUNDLE, a DATA_DIR,
a .env pointing at both, and helpers to run the real CLI."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fund_mail.config import Config, config_from_values
from fund_mail.emulator import GraphEmulator
from tests.imap_server import DovecotServer, TokenIntrospection
from tests.sftp_servers import AsyncSftpServer


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
