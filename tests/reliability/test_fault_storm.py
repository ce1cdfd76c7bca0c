"""Network faults from the emulator while fund_mail_once archives a few hundred messages:
429 storms with fractional Retry-After, 503 and 504, connections reset mid-body, responses
slower than the timeout, and tokens that expire mid-run. Reproduce: uv run pytest
tests/reliability -s -q"""

import random
from collections import Counter, defaultdict
from datetime import timedelta

from fund_mail.emulator import file_attachment
from tests.helpers import archived_ids, run_cli

SEED = 7


def test_fault_storm_archives_everything_once_and_honours_retry_after(
    graph, data_dir, tmp_path, now
):
    env = graph.write_env(tmp_path / ".env", data_dir, RETRY_BACKOFF="0.02", HTTP_TIMEOUT="1")
    assert run_cli("fund_mail_once", "--env-file", str(env)).returncode == 0  # baseline
    rng = random.Random(SEED)
    expected = [
        graph.mailbox.add_message(
            now + timedelta(seconds=i),
            subject=f"storm {i}",
            attachments=[
                file_attachment(
                    f"s{i}.bin", bytes(rng.randrange(256) for _ in range(64)) * rng.randint(1, 300)
                )
            ]
            if i % 3 == 0
            else [],
        ).immutable_id
        for i in range(300)
    ]
    graph.max_page = 120  # several list pages, so list faults land mid-scan
    kinds = ["throttle"] * 6 + [
        "unavailable",
        "gateway_timeout",
        "reset",
        "slow",
        "expire_token",
    ] * 2
    for _ in range(45):
        kind = rng.choice(kinds)
        graph.add_fault(
            kind,
            target=rng.choice(["list", "attachment", "folder", "any"]),
            times=1,
            retry_after=f"{rng.uniform(0.05, 0.4):.3f}"
            if kind in ("throttle", "unavailable")
            else None,
            delay=1.6 if kind == "slow" else 0.0,
        )
    outcomes = []
    for _ in range(5):  # a run may give up after its retries; the next scheduled run goes on
        result = run_cli("fund_mail_once", "--env-file", str(env))
        outcomes.append(result.returncode)
        if result.returncode == 0:
            break
    assert outcomes[-1] == 0, outcomes

    found = archived_ids(data_dir)
    assert not [i for i, n in Counter(found).items() if n > 1], "duplicates"
    assert sorted(found) == sorted(expected), "lost mail"

    # No request came before the Retry-After of the answer it retries.
    by_path = defaultdict(list)
    for record in graph.records():
        by_path[(record.path, tuple(sorted(record.query.items())))].append(record)
    checked = 0
    for records in by_path.values():
        for answer, retry in zip(records, records[1:], strict=False):
            if answer.retry_after:
                checked += 1
                assert retry.started >= answer.finished + float(answer.retry_after), answer
    fired = Counter(f.kind for f in graph.faults for _ in range(f.fired))
    assert sum(fired.values()) >= 30 and checked >= 5
    print(
        f"\nfault storm: seed {SEED}, {sum(fired.values())} faults injected "
        f"({', '.join(f'{k} {v}' for k, v in sorted(fired.items()))}), {len(expected)} "
        f"messages, runs {outcomes}, {checked} Retry-After waits verified, lost 0, "
        "duplicates 0"
    )
