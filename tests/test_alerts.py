"""Alert mail: conditions from the run history, no storms (clock injected), and both
transports for real: Graph sendMail against the emulator, SMTP STARTTLS + login against aiosmtpd."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from fund_mail import alerts
from fund_mail.admin.status import status_report
from fund_mail.alerts import (
    Condition,
    Facts,
    Notice,
    Settings,
    build_email,
    check_and_notify,
    evaluate,
    iso,
    plan,
    render,
    send_test_alert,
)
from fund_mail.archive.index import ArchiveIndex, RunRecord
from fund_mail.config import config_from_values
from fund_mail.emulator.tls import make_tls_files
from fund_mail.errors import RunFailed
from tests.helpers import run_cli
from tests.sftp_servers import free_port
from tests.test_auth import _certificate

AUTH_ERROR = (
    "Sign-in failed (invalid_client): AADSTS7000222: The provided client secret keys are "
    "expired. Fix: CLIENT_SECRET has expired: create a new client secret and put it in .env."
)


class Outbox:
    """A transport that keeps what it was asked to send; `fail` makes it refuse."""

    name = "test outbox"

    def __init__(self) -> None:
        self.sent: list[tuple[list[str], str, str]] = []
        self.fail = False

    def send(self, to, subject, body) -> None:
        if self.fail:
            raise OSError("connection refused")
        self.sent.append((to, subject, body))

    def subjects(self) -> list[str]:
        return [subject for _, subject, _ in self.sent]


@pytest.fixture
def alert_config(graph, data_dir):
    values = graph.env_values(data_dir, RETRY_BACKOFF="0.05")
    values.update(ALERT_TO="ops@example.com, 운영팀@example.com", ALERT_STALE_MINUTES="10080")
    return config_from_values(values)


def record(config, at: datetime, exit_code: int, error: str = "") -> None:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    index = ArchiveIndex(config.data_dir)
    try:
        index.record_run("fund_mail_once", iso(at), exit_code, error)
    finally:
        index.close()


def test_alert_on_the_third_failure_not_the_fourth_reminder_then_resolved(alert_config):
    outbox = Outbox()
    t0 = datetime.now(UTC)
    for n in range(2):
        record(alert_config, t0 + timedelta(minutes=5 * n), 4, AUTH_ERROR)
        assert check_and_notify(alert_config, t0 + timedelta(minutes=5 * n), outbox) == []
    record(alert_config, t0 + timedelta(minutes=10), 4, AUTH_ERROR)
    check_and_notify(alert_config, t0 + timedelta(minutes=10), outbox)
    assert len(outbox.sent) == 1
    to, subject, body = outbox.sent[0]
    assert to == ["ops@example.com", "운영팀@example.com"]
    assert "PROBLEM" in subject and "failed 3 times in a row" in subject
    assert AUTH_ERROR in body, "the mail carries the CLI's error with its fix"

    record(alert_config, t0 + timedelta(minutes=15), 4, AUTH_ERROR)
    check_and_notify(alert_config, t0 + timedelta(minutes=15), outbox)
    assert len(outbox.sent) == 1, "no second mail on the 4th failure"
    assert "alerts:            1 active: fund_mail_once failed 3 times in a row" in (
        status_report(alert_config)
    )

    before_repeat = t0 + timedelta(minutes=10, hours=12) - timedelta(seconds=1)
    check_and_notify(alert_config, before_repeat, outbox)
    assert len(outbox.sent) == 1
    check_and_notify(alert_config, t0 + timedelta(minutes=10, hours=12), outbox)
    assert len(outbox.sent) == 2 and "STILL A PROBLEM" in outbox.subjects()[1]

    record(alert_config, t0 + timedelta(hours=13), 0)
    check_and_notify(alert_config, t0 + timedelta(hours=13), outbox)
    assert len(outbox.sent) == 3 and "RESOLVED" in outbox.subjects()[2]
    check_and_notify(alert_config, t0 + timedelta(hours=14), outbox)
    assert len(outbox.sent) == 3
    assert "alerts:            none active; mail goes to ops@example.com" in (
        status_report(alert_config)
    )


def test_a_failed_send_is_logged_never_raised_and_tried_again(alert_config, caplog):
    outbox = Outbox()
    outbox.fail = True
    t0 = datetime.now(UTC)
    for _ in range(3):
        record(alert_config, t0, 1, "Cannot reach the SFTP server")
    assert check_and_notify(alert_config, t0, outbox) == []
    assert "Could not send the alert" in caplog.text
    outbox.fail = False
    check_and_notify(alert_config, t0 + timedelta(minutes=5), outbox)
    assert len(outbox.sent) == 1 and "PROBLEM" in outbox.subjects()[0]


def test_lock_refusals_neither_break_nor_extend_a_streak(alert_config):
    outbox = Outbox()
    t0 = datetime.now(UTC)
    for code in (1, 3, 1, 3, 3):
        record(alert_config, t0, code, "x")
    check_and_notify(alert_config, t0, outbox)
    assert outbox.sent == []
    record(alert_config, t0, 1, "x")
    check_and_notify(alert_config, t0, outbox)
    assert len(outbox.sent) == 1


RUN = RunRecord("2025-06-30T04:00:00Z", "2025-06-30T04:00:05Z", 0, "")
NOW = datetime(2025, 6, 30, 4, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("facts", "keys"),
    [
        (Facts([RUN], RUN.finished_at, RUN.started_at), set()),
        (Facts([RUN], "2025-06-30T03:29:00Z", RUN.started_at), {"stale"}),
        (Facts([], None, "2025-06-30T03:29:00Z"), {"stale"}),
        (Facts([RUN], RUN.finished_at, RUN.started_at, 2, "2025-06-30T03:40:00Z"), set()),
        (Facts([RUN], RUN.finished_at, RUN.started_at, 2, "2025-06-30T03:29:59Z"), {"outbox"}),
        (
            Facts([RUN], RUN.finished_at, RUN.started_at, quarantined=[("m.eml", RUN.started_at)]),
            {"quarantine"},
        ),
        (
            Facts(
                [RUN],
                RUN.finished_at,
                RUN.started_at,
                expiries=[("CLIENT_SECRET", "2025-07-15T00:00:00Z")],
            ),
            set(),
        ),
        (
            Facts(
                [RUN],
                RUN.finished_at,
                RUN.started_at,
                expiries=[("CLIENT_CERT", "2025-07-13T00:00:00Z")],
            ),
            {"expiry:CLIENT_CERT"},
        ),
        (
            Facts(
                [RUN],
                RUN.finished_at,
                RUN.started_at,
                external={
                    "audit_gap": {"title": "t", "since": RUN.started_at, "detail": "d", "fix": "f"}
                },
            ),
            {"audit_gap"},
        ),
    ],
)
def test_conditions(facts, keys):
    settings = Settings(stale=timedelta(minutes=60))
    assert set(evaluate(facts, settings, NOW)) == keys


def test_outbox_age_is_no_problem_when_uploads_are_off():
    facts = Facts([RUN], RUN.finished_at, RUN.started_at, 2, "2025-06-29T00:00:00Z")
    assert evaluate(facts, Settings(upload_enabled=False), NOW) == {}


def test_plan_is_one_mail_per_condition_and_transition():
    condition = Condition("stale", "no run", "2025-06-30T04:00:00Z", "d", "f")
    state: dict = {}
    first = plan(state, {"stale": condition}, NOW, timedelta(hours=12))
    assert [n.kind for n in first] == ["problem"]
    alerts.record_sent(state, first[0], NOW)
    assert plan(state, {"stale": condition}, NOW + timedelta(hours=11), timedelta(hours=12)) == []
    assert [n.kind for n in plan(state, {}, NOW, timedelta(hours=12))] == ["resolved"]


def test_audit_can_raise_and_clear_a_condition(alert_config):
    outbox = Outbox()
    record(alert_config, datetime.now(UTC), 0)
    alerts.report_audit(alert_config.data_dir, {"2025-06-30": "2025-06-30: 2 missing"})
    check_and_notify(alert_config, transport=outbox)
    assert "the audit found gaps it could not repair on 1 day(s)" in outbox.subjects()[0]
    assert "2025-06-30: 2 missing" in outbox.sent[0][2]
    alerts.report_audit(alert_config.data_dir, {"2025-06-30": None})
    check_and_notify(alert_config, transport=outbox)
    assert "RESOLVED" in outbox.subjects()[1]


def test_quarantined_message_is_alerted(alert_config):
    outbox = Outbox()
    record(alert_config, datetime.now(UTC), 0)
    (alert_config.data_dir / "quarantine").mkdir()
    (alert_config.data_dir / "quarantine" / "AAMk-broken.json").write_text("{}")
    check_and_notify(alert_config, transport=outbox)
    assert "1 message(s) quarantined" in outbox.subjects()[0]
    assert "AAMk-broken.json" in outbox.sent[0][2]


def test_secret_expiry_within_14_days(alert_config):
    outbox = Outbox()
    record(alert_config, datetime.now(UTC), 0)
    soon = dataclasses.replace(
        alert_config, client_secret_expires=(datetime.now(UTC) + timedelta(days=10)).date()
    )
    check_and_notify(soon, transport=outbox)
    assert "CLIENT_SECRET expires on" in outbox.subjects()[0]
    assert "CLIENT_SECRET_EXPIRES" in outbox.sent[0][2]


def test_certificate_expiry_is_read_from_the_certificate(graph, data_dir, tmp_path):
    pem, pfx = _certificate(tmp_path, days=5)[:2]
    for path, password in ((pem, ""), (pfx, "pfx-pass")):
        values = graph.env_values(
            data_dir,
            ALERT_TO="ops@example.com",
            CLIENT_CERT_PATH=str(path),
            CLIENT_CERT_PASSWORD=password,
        )
        config = config_from_values(values)
        record(config, datetime.now(UTC), 0)
        assert dict(alerts._expiries(config))["CLIENT_CERT"] > iso(datetime.now(UTC))
        outbox = Outbox()
        check_and_notify(config, transport=outbox)
        assert any("CLIENT_CERT expires on" in s for s in outbox.subjects())
        (data_dir / alerts.STATE_NAME).unlink()


def test_korean_and_english_subjects_encode_and_decode():
    subject = "[fund_mail] PROBLEM on 펀드PC: 격리된 메일 1건 quarantined"
    message = build_email("fund@example.com", ["ops@example.com"], subject, "본문 body\n")
    wire = message.as_bytes(policy=email.policy.SMTP)
    assert wire.isascii(), "headers are RFC 2047 encoded, the body transfer-encoded"
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert parsed["Subject"] == subject
    assert parsed.get_content().replace("\r\n", "\n") == "본문 body\n"


def test_rendered_mail_names_what_since_last_run_fix_and_host():
    condition = Condition("failures", "fund_mail_once failed 3 times in a row",
                          "2025-06-30T04:15:00Z", AUTH_ERROR, "Follow the fix.")  # fmt: skip
    subject, body = render(
        Notice("problem", condition),
        mailbox="fund@example.com",
        host="FUNDPC01",
        last_success="2025-06-30T04:10:04Z",
        tz_name="Asia/Seoul",
        repeat_hours=12,
    )
    assert subject == "[fund_mail] PROBLEM on FUNDPC01: fund_mail_once failed 3 times in a row"
    assert "Since:          2025-06-30 13:15:00 Asia/Seoul" in body
    assert "Last good run:  2025-06-30 13:10:04 Asia/Seoul" in body
    assert "Host:           FUNDPC01" in body
    assert AUTH_ERROR in body and "Follow the fix." in body


# -- the two transports, for real -----------------------------------------------------------
def test_graph_sendmail_against_the_emulator(alert_config, graph):
    t0 = datetime.now(UTC)
    for _ in range(3):
        record(alert_config, t0, 4, AUTH_ERROR)
    sent = check_and_notify(alert_config, t0)
    assert len(sent) == 1
    assert len(graph.sent_mail) == 1
    mail = graph.sent_mail[0]
    assert mail["to"] == ["ops@example.com", "운영팀@example.com"]
    assert mail["subject"] == sent[0]
    assert mail["body"]["contentType"] == "text" and AUTH_ERROR in mail["body"]["content"]
    assert mail["raw"]["saveToSentItems"] is False
    requests = graph.records("sendmail")
    assert [(r.method, r.status) for r in requests] == [("POST", 202)]


def test_graph_sendmail_refused_is_logged_not_raised(alert_config, graph, caplog):
    graph.allow_send = False
    for _ in range(3):
        record(alert_config, datetime.now(UTC), 1, "x")
    assert check_and_notify(alert_config) == []
    assert "Mail.Send" in caplog.text
    assert graph.sent_mail == []


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.received = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        self.received.set()
        return "250 OK"


class Authenticator:
    def __init__(self) -> None:
        self.logins: list[tuple[str, bool]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == b"alerts@example.com"
            and auth_data.password == b"smtp-Pass-7"
            and session.ssl is not None  # only over STARTTLS
        )
        self.logins.append((auth_data.login.decode(), ok))
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server(tmp_path: Path, monkeypatch):
    import ssl

    tls = make_tls_files(tmp_path / "smtp-tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_cert))
    recorder, authenticator = Recorder(), Authenticator()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    yield controller, recorder, authenticator
    controller.stop()


def smtp_config(data_dir, controller, password="smtp-Pass-7"):
    return config_from_values(
        {
            "EMAIL_ID": "fund@example.com",
            "TENANT_ID": "contoso.example",
            "CLIENT_ID": "66666666-7777-8888-9999-000000000000",
            "CLIENT_SECRET": "s3cret-value",
            "DATA_DIR": str(data_dir),
            "ALERT_TO": "ops@example.com,운영팀@example.com",
            "ALERT_SMTP_HOST": "127.0.0.1",
            "ALERT_SMTP_PORT": str(controller.port),
            "ALERT_SMTP_USER": "alerts@example.com",
            "ALERT_SMTP_PASSWORD": password,
            "ALERT_STALE_MINUTES": "10080",
        }
    )


def test_smtp_starttls_and_login_against_aiosmtpd(smtp_server, data_dir):
    controller, recorder, authenticator = smtp_server
    config = smtp_config(data_dir, controller)
    t0 = datetime.now(UTC)
    for _ in range(3):
        record(config, t0, 4, AUTH_ERROR)
    sent = check_and_notify(config, t0)
    assert recorder.received.wait(10)
    assert authenticator.logins == [("alerts@example.com", True)]
    mail_from, rcpt_tos, content = recorder.messages[0]
    assert mail_from == "alerts@example.com"
    assert rcpt_tos == ["ops@example.com", "운영팀@example.com"]
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    assert parsed["Subject"] == sent[0]
    assert AUTH_ERROR in parsed.get_content()


def test_smtp_wrong_password_is_reported_by_test_alert(smtp_server, data_dir):
    controller, recorder, _ = smtp_server
    with pytest.raises(RunFailed, match="could not be sent via SMTP"):
        send_test_alert(smtp_config(data_dir, controller, password="wrong-password"))
    assert recorder.messages == []


def test_cli_test_alert_via_graph(alert_config, graph, env_file):
    with env_file.open("a", encoding="utf-8") as env:
        env.write("ALERT_TO=ops@example.com\n")
    result = run_cli("fund_mail_once", "--env-file", str(env_file), "--test-alert")
    assert result.returncode == 0, result.stderr
    assert "Test alert sent to ops@example.com via Graph sendMail" in result.stdout
    assert graph.sent_mail[0]["subject"].startswith("[fund_mail] TEST on ")
    graph.allow_send = False
    refused = run_cli("fund_mail_once", "--env-file", str(env_file), "--test-alert")
    assert refused.returncode == 1
    assert "Mail.Send" in refused.stderr


def test_an_audit_gap_that_was_not_repaired_is_alerted_until_a_later_audit_mends_it(
    alert_config, graph, monkeypatch
):
    from datetime import date

    from fund_mail import engine
    from fund_mail.archive.index import AuditCounts
    from fund_mail.engine import audit as engine_audit  # where run_audit finds audit_day

    found = {"counts": AuditCounts(in_mailbox=5, archived=3, missing=2, repaired=1)}
    monkeypatch.setattr(
        engine_audit,
        "audit_day",
        lambda config, client, index, day, **kw: engine.DayAudit(day, found["counts"]),
    )
    record(alert_config, datetime.now(UTC), 0)
    outbox = Outbox()
    engine.run_audit(alert_config, [date(2025, 6, 30)], dry_run=True)
    check_and_notify(alert_config, transport=outbox)
    assert outbox.sent == [], "a dry run repairs nothing, so it reports no unrepaired gap"
    engine.run_audit(alert_config, [date(2025, 6, 30)])
    check_and_notify(alert_config, transport=outbox)
    assert "the audit found gaps it could not repair on 1 day(s)" in outbox.subjects()[0]
    body = outbox.sent[0][2]
    assert "2025-06-30: 5 in the mailbox, 3 already archived, 2 missing, 1 repaired" in body
    assert "fund_mail_one_day --audit --from 2025-06-30 --to 2025-06-30" in body
    found["counts"] = AuditCounts(in_mailbox=5, archived=3, missing=2, repaired=2)
    engine.run_audit(alert_config, [date(2025, 6, 30)])
    check_and_notify(alert_config, transport=outbox)
    assert "RESOLVED" in outbox.subjects()[1]


def test_the_daily_self_audit_reports_an_unrepaired_gap(alert_config, graph, monkeypatch):
    from datetime import date

    from fund_mail import engine
    from fund_mail.archive.index import AuditCounts
    from fund_mail.engine import audit as engine_audit  # where the self-audit finds audit_day

    config = dataclasses.replace(alert_config, audit_days=1, audit_at="01:00")
    day = date(2025, 6, 30)

    def at(d, hour, minute=0):
        return datetime(d.year, d.month, d.day, hour, minute, tzinfo=config.tz)

    graph.mailbox.add_message(at(day, 8))
    engine.run_once(config, now=lambda: at(day, 8, 5))  # the baseline
    gap = AuditCounts(in_mailbox=4, archived=2, missing=2, repaired=0)
    monkeypatch.setattr(
        engine_audit, "audit_day", lambda config, client, index, d, **kw: engine.DayAudit(d, gap)
    )
    engine.run_once(config, now=lambda: at(day + timedelta(days=1), 1, 5))
    state = alerts.load_state(config.data_dir)
    assert "2025-06-30: 4 in the mailbox" in state["external"][alerts.AUDIT_GAP]["detail"]
