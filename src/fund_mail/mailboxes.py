"""Several mailboxes in one installation (MAILBOXES=a@x,b@x).

Each mailbox runs the same command on its own configuration (Config.for_mailbox): its own
DATA_DIR/<mailbox>/ with its cursor, index, locks, audit state and DBs, its own Graph client
with Graph's 4 requests in flight, and SFTP_BASE_DIR/<mailbox>/ on the server. At most
MAX_PARALLEL_MAILBOXES run side by side. One failing does not stop the others; the exit code is
the worst of them (errors.SEVERITY).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fund_mail.config import Config
from fund_mail.errors import worst
from fund_mail.logs import mailbox_label

log = logging.getLogger(__name__)


def run_each(config: Config, work: Callable[[Config], int]) -> int:
    """work(config of one mailbox) -> exit code, for every mailbox; the worst code."""
    configs = config.mailbox_configs()
    if len(configs) == 1:
        return work(configs[0])

    def one(mailbox: Config) -> int:
        with mailbox_label(mailbox.email_id):
            code = work(mailbox)
            log.debug("finished with exit code %d", code)
            return code

    workers = min(config.max_parallel_mailboxes, len(configs))
    with ThreadPoolExecutor(workers, thread_name_prefix="mailbox") as pool:
        codes = list(pool.map(one, configs))
    if any(codes):
        failed = [f"{c.email_id} ({code})" for c, code in zip(configs, codes, strict=True) if code]
        log.error("%d of %d mailboxes failed: %s", len(failed), len(configs), ", ".join(failed))
    return int(worst(codes))
