"""Secrets never reach a log line, an error message or the console, even in failing runs at
debug level. Reproduce: uv run pytest tests/reliability -s -q"""

from datetime import timedelta

from fund_mail.emulator import file_attachment
from tests.helpers import run_cli


def test_no_secret_in_any_output_of_failing_runs(graph, sftp_server, data_dir, tmp_path, now):
    secret = graph.registration.client_secret
    values = graph.env_values(data_dir, RETRY_BACKOFF="0.01")
    values.update(sftp_server.env(tmp_path / "known_hosts"))
    sftp_password = values["SFTP_PW"]

    def env(**changes):
        path = tmp_path / f"{len(list(tmp_path.glob('*.env')))}.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in {**values, **changes}.items()))
        return str(path)

    good = env()
    outputs = []

    def run(*args, expect=None):
        result = run_cli("fund_mail_once", "--env-file", *args, "-v")
        if expect is not None:
            assert result.returncode == expect, result.stderr
        outputs.append(result.stdout + result.stderr)

    run(good, expect=0)  # baseline
    graph.mailbox.add_message(now, attachments=[file_attachment("a.pdf", b"x")])
    run(env(SFTP_PW="wrong-" + sftp_password), expect=1)  # archived, upload refused
    graph.expire_tokens()
    graph.mailbox.add_message(now + timedelta(minutes=1))
    run(good, expect=0)  # 401, renewed token, archive, deliver
    run(env(CLIENT_SECRET=secret + "-old"), expect=4)
    graph.deny_access = True
    run(good, expect=5)
    run(good, "--check")
    graph.deny_access = False
    graph.add_fault("unavailable", target="list", times=None)
    run(good, expect=1)

    logs = "".join(p.read_text("utf-8") for p in (data_dir / "logs").glob("*.log*"))
    everything = "\n".join(outputs) + logs
    assert "DEBUG" in logs and "ERROR" in logs, "the runs did log, at debug level"
    tokens = list(graph._tokens)
    assert len(tokens) >= 3
    for value in [secret, sftp_password, *tokens]:
        assert value not in everything
    print(
        f"\nsecrets: {len(outputs)} runs at debug level ({len(everything)} characters of "
        f"console and log output) searched for the client secret, the SFTP password and "
        f"{len(tokens)} access tokens: 0 found"
    )
