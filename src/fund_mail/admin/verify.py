"""`fund_mail_once --verify`: check the local day folders, or the server's copies, against the
manifest chain and the archive index. Reads, never writes."""

from __future__ import annotations

from datetime import date

from fund_mail.archive.index import INDEX_NAME, ArchiveIndex
from fund_mail.archive.manifest import LocalTree, Verification, verify
from fund_mail.config import Config
from fund_mail.errors import UsageError


def _day(value: date | None, default: str) -> str:
    return value.strftime("%Y_%m_%d") if value else default


def verify_archive(
    config: Config, remote: bool, first: date | None = None, last: date | None = None
) -> tuple[Verification, str]:
    """(the verification, where it looked)."""
    if not (config.data_dir / INDEX_NAME).is_file():
        raise UsageError(
            f"{config.data_dir} holds no archive index yet: nothing to verify (check DATA_DIR)"
        )
    bounds = {"first": _day(first, ""), "last": _day(last, "9999_99_99")}
    index = ArchiveIndex(config.data_dir)
    try:
        expected = index.manifests()
    finally:
        index.close()
    if not remote:
        return verify(LocalTree(config.data_dir), expected, False, **bounds), str(config.data_dir)
    if not config.upload_enabled:
        raise UsageError("--remote needs the SFTP server: HOST is empty in .env")
    from fund_mail.delivery import SftpTree, connect

    transport, sftp = connect(config)
    try:
        tree = SftpTree(sftp, config.sftp_base_dir)
        where = f"sftp://{config.sftp_host}:{config.sftp_port}{config.sftp_base_dir}"
        return verify(tree, expected, True, **bounds), where
    finally:
        transport.close()
