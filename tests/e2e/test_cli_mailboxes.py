"""MAILBOXES=a,b through the real command: each mailbox in its own folder with its own state,
delivered to its own folder on the server; one refused mailbox does not stop the other."""

from __future__ import annotations

from datetime import timedelta

from tests.helpers import archived_ids, run_cli

FUND, DESK = "fund@example.com", "desk@example.com"


def write_env(graph, sftp_server, data_dir, tmp_path):
    values = graph.env_values(data_dir, RETRY_BACKOFF="0.05", MAILBOXES=f"{FUND}, {DESK}")
    values.update(sftp_server.env(tmp_path / "known_hosts"))
    env = tmp_path / ".env"
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return str(env)


def test_two_mailboxes_are_isolated(graph, sftp_server, data_dir, tmp_path, now):
    desk = graph.add_mailbox(DESK)
    env = write_env(graph, sftp_server, data_dir, tmp_path)
    first = run_cli("fund_mail_once", "--env-file", env)
    assert first.returncode == 0, first.stderr
    assert (
        f"[{FUND}] fund_mail_once:" in first.stdout and f"[{DESK}] fund_mail_once:" in first.stdout
    )
    for mailbox in (FUND, DESK):
        assert (data_dir / mailbox / "LAST_TIME.json").is_file()
        assert (data_dir / mailbox / "fund_mail_index.sqlite3").is_file()
    assert not (data_dir / "LAST_TIME.json").exists(), "no state outside the mailbox folders"

    fund_mail = graph.mailbox.add_message(now + timedelta(minutes=1), subject="for fund")
    desk_mail = desk.add_message(now + timedelta(minutes=1), subject="for desk")
    second = run_cli("fund_mail_once", "--env-file", env)
    assert second.returncode == 0, second.stderr
    assert archived_ids(data_dir / FUND) == [fund_mail.immutable_id]
    assert archived_ids(data_dir / DESK) == [desk_mail.immutable_id]
    landed = sorted(
        p.relative_to(sftp_server.root).parts[1] for p in sftp_server.root.rglob("*.db")
    )
    assert landed == [DESK, FUND], "each mailbox under SFTP_BASE_DIR/<mailbox>/"
    per_mailbox = graph.max_in_flight_by_mailbox
    assert set(per_mailbox) == {FUND, DESK} and max(per_mailbox.values()) <= 4

    # The fund mailbox leaves the app's scope: 403 for it, the desk mailbox goes on.
    graph.denied_mailboxes.add(FUND)
    later_fund = graph.mailbox.add_message(now + timedelta(minutes=2))
    later_desk = desk.add_message(now + timedelta(minutes=2))
    refused = run_cli("fund_mail_once", "--env-file", env)
    assert refused.returncode == 5, refused.stderr
    assert f"[{FUND}]" in refused.stderr and "ErrorAccessDenied" in refused.stderr
    assert later_desk.immutable_id in archived_ids(data_dir / DESK)
    assert later_fund.immutable_id not in archived_ids(data_dir / FUND)

    graph.denied_mailboxes.clear()
    again = run_cli("fund_mail_once", "--env-file", env)
    assert again.returncode == 0, again.stderr
    assert sorted(archived_ids(data_dir / FUND)) == sorted(
        [fund_mail.immutable_id, later_fund.immutable_id]
    )
    assert len(archived_ids(data_dir / DESK)) == 2, "nothing archived twice"

    status = run_cli("fund_mail_once", "--env-file", env, "--status")
    assert status.returncode == 0, status.stderr
    assert f"fund_mail status for {FUND}" in status.stdout
    assert f"fund_mail status for {DESK}" in status.stdout
    assert str(data_dir / DESK) in status.stdout
