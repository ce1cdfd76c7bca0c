"""The one retry policy: its waits, its loop, and the urllib3 Retry it builds."""

import pytest

from fund_mail.graph.retry import TOKEN_ANSWERS, graph_policy
from fund_mail.retry import RETRY_STATUSES, HttpRetry, RetryPolicy


def recording(policy: RetryPolicy) -> tuple[RetryPolicy, list[float]]:
    waits: list[float] = []
    return RetryPolicy(**{**policy.__dict__, "sleep": waits.append}), waits


class Flaky:
    """Fails with `error` the first `failures` times it is called, then returns "done"."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


@pytest.mark.parametrize(
    ("policy", "waits"),
    [
        (RetryPolicy(attempts=6, backoff=1.0), [1, 2, 4, 8, 16]),
        (RetryPolicy(attempts=6, backoff=1.0, cap=5), [1, 2, 4, 5, 5]),
        (RetryPolicy(attempts=3, backoff=5.5, multiplier=1.0), [5.5, 5.5]),
        (RetryPolicy(attempts=6, backoff=0.1), [0.1, 0.2, 0.4, 0.8, 1.6]),
        (RetryPolicy(attempts=1, backoff=1.0), []),
        (RetryPolicy(attempts=4, backoff=0.0), [0, 0, 0]),
    ],
)
def test_waits_between_tries(policy, waits):
    assert [policy.wait(n) for n in range(1, policy.attempts)] == pytest.approx(waits)
    policy, slept = recording(policy)
    with pytest.raises(OSError):
        policy.call(Flaky(99, OSError("down")), OSError, "test")
    assert slept == pytest.approx(waits)


def test_a_call_that_recovers_returns_its_result():
    policy, slept = recording(RetryPolicy(attempts=6, backoff=0.5))
    action = Flaky(2, ConnectionResetError("reset"))
    assert policy.call(action, OSError, "test") == "done"
    assert action.calls == 3 and slept == [0.5, 1.0]


def test_tries_run_out_and_the_last_error_is_raised():
    policy, _ = recording(RetryPolicy(attempts=3, backoff=0))
    action = Flaky(99, TimeoutError("slow"))
    with pytest.raises(TimeoutError, match="slow"):
        policy.call(action, OSError, "test")
    assert action.calls == 3


def test_failed_builds_the_error_from_the_last_one_and_the_tries():
    policy, _ = recording(RetryPolicy(attempts=4, backoff=0))
    with pytest.raises(RuntimeError, match="gave up after 4: boom") as caught:
        policy.call(
            Flaky(99, OSError("boom")),
            OSError,
            "test",
            failed=lambda e, tries: RuntimeError(f"gave up after {tries}: {e}"),
        )
    assert isinstance(caught.value.__cause__, OSError)


def test_give_up_stops_at_once_without_waiting():
    policy, slept = recording(RetryPolicy(attempts=6, backoff=1))
    action = Flaky(99, OSError("already retried"))
    with pytest.raises(RuntimeError, match="after 1"):
        policy.call(
            action,
            OSError,
            "test",
            give_up=lambda e: "already" in str(e),
            failed=lambda e, tries: RuntimeError(f"after {tries}"),
        )
    assert action.calls == 1 and slept == []


def test_other_errors_pass_through_untried():
    policy, slept = recording(RetryPolicy(attempts=6, backoff=1))
    action = Flaky(99, KeyError("not transient"))
    with pytest.raises(KeyError):
        policy.call(action, OSError, "test")
    assert action.calls == 1 and slept == []


@pytest.mark.parametrize(
    "fields",
    [
        {"attempts": 0, "backoff": 1},
        {"attempts": 2, "backoff": -1},
        {"attempts": 2, "backoff": 1, "multiplier": 0.5},
    ],
)
def test_unusable_policies_are_refused(fields):
    with pytest.raises(ValueError, match="not a usable retry policy"):
        RetryPolicy(**fields)


def test_graph_policy_builds_urllib3_retry_with_its_counts():
    retry = graph_policy(0.25).http_retry()
    assert isinstance(retry, HttpRetry)
    assert (retry.total, retry.connect, retry.read, retry.status) == (10, 5, 5, 8)
    assert (retry.backoff_factor, retry.backoff_max) == (0.25, 60)
    assert tuple(retry.status_forcelist) == RETRY_STATUSES
    assert retry.respect_retry_after_header and not retry.raise_on_status
    assert "POST" not in retry.allowed_methods, "Graph requests are GETs"
    token_retry = graph_policy(0.25).http_retry(methods=frozenset({"GET", "POST"}))
    assert "POST" in token_retry.allowed_methods, "the token POST is safe to repeat"


def test_a_policy_without_http_counts_cannot_build_an_http_retry():
    with pytest.raises(ValueError, match="status_attempts"):
        TOKEN_ANSWERS.http_retry()


def test_fractional_retry_after_is_parsed():
    assert HttpRetry().parse_retry_after("2.128") == pytest.approx(2.128)
    assert HttpRetry().parse_retry_after("3") == 3
    assert HttpRetry().parse_retry_after("-1") == 0
