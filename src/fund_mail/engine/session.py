"""What a command holds while it works: its lock, the archive index, and the Graph client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fund_mail.archive.fsutil import RunLock, command_lock, sweep_stale_partials
from fund_mail.archive.index import ArchiveIndex
from fund_mail.config import Config
from fund_mail.graph.auth import TokenProvider, Tokens
from fund_mail.graph.client import GraphClient


@contextmanager
def exclusive_index(config: Config, command: str, lock_name: str) -> Iterator[ArchiveIndex]:
    """Hold the command's lock, open the index, and finish what a killed run left open."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(command_lock(config.data_dir, lock_name), lock_name):
        index = ArchiveIndex(config.data_dir)
        try:
            index.recover(command)
            sweep_stale_partials(config.data_dir)
            yield index
        finally:
            index.close()


def open_graph(config: Config, tokens: Tokens | None = None) -> GraphClient:
    tokens = tokens or TokenProvider(config)
    return GraphClient(config, tokens, backoff=config.retry_backoff)
