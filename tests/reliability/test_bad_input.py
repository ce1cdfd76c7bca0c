"""The bad-input catalog: every case gets a clear error or safe handling. Nothing is lost and
nothing is written outside DATA_DIR. Reproduce: uv run pytest tests/reliability -s -q"""

import json
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from fund_mail.archive.rows import is_windows_safe
from fund_mail.emulator import (
    file_attachment,
    inner_message,
    item_attachment,
    reference_attachment,
)
from fund_mail.engine import run_once
from tests.helpers import BIN, archived_rows, run_cli

CASES_RUN: list[str] = []

# -- the .env ---------------------------------------------------------------------------------
ENV_CASES = [
    ("EMAIL_ID missing", {"EMAIL_ID": None}, "EMAIL_ID is missing"),
    ("EMAIL_ID not an address", {"EMAIL_ID": "fund"}, "is not a mailbox address"),
    ("TENANT_ID with a slash", {"TENANT_ID": "a/b"}, "TENANT_ID='a/b' must be a GUID"),
    ("CLIENT_ID not a GUID", {"CLIENT_ID": "my-app"}, "is not a GUID"),
    ("no secret, no certificate", {"CLIENT_SECRET": None}, "CLIENT_SECRET is missing"),
    ("certificate file missing", {"CLIENT_SECRET": None, "CLIENT_CERT_PATH": "/nope.pfx"},
     "CLIENT_CERT_PATH='/nope.pfx': no such file"),
    ("DATA_DIR missing", {"DATA_DIR": None}, "DATA_DIR is missing"),
    ("OVERLAP_MINUTES not a number", {"OVERLAP_MINUTES": "ten"}, "is not a whole number"),
    ("OVERLAP_MINUTES negative", {"OVERLAP_MINUTES": "-5"}, "out of range"),
    ("PAGE_SIZE zero", {"PAGE_SIZE": "0"}, "PAGE_SIZE=0 is out of range"),
    ("PAGE_SIZE over Graph's maximum", {"PAGE_SIZE": "5000"}, "PAGE_SIZE=5000 is out of range"),
    ("HTTP_TIMEOUT not a number", {"HTTP_TIMEOUT": "fast"}, "HTTP_TIMEOUT='fast' is not a number"),
    ("TIMEZONE an abbreviation", {"TIMEZONE": "KST"}, "TIMEZONE='KST' is not an IANA time zone"),
    ("GRAPH_URL plain http", {"GRAPH_URL": "http://graph.microsoft.com"}, "must be an https://"),
    ("AUTHORITY_HOST not a URL", {"AUTHORITY_HOST": "login"}, "must be an https://"),
    ("BODY_CONTENT_TYPE unknown", {"BODY_CONTENT_TYPE": "markdown"}, "must be html or text"),
    ("PORT not a number", {"HOST": "sftp.example", "PORT": "ssh"}, "PORT='ssh' is not a whole"),
    ("HOST without SFTP_ID", {"HOST": "sftp.example", "SFTP_PW": "x"}, "SFTP_ID is missing"),
    ("SFTP_HOST_KEY malformed", {"SFTP_HOST_KEY": "ab:cd:ef"}, "ssh-keygen -lf"),
    ("MAX_CONCURRENCY over 4", {"MAX_CONCURRENCY": "10"}, "MAX_CONCURRENCY=10 is out of range"),
    ("DATA_DIR with a dotenv escape", {"DATA_DIR": '"/tmp/fund\\fmail"', "LOG_DIR": None},
     "DATA_DIR holds a control character"),
    ("LOG_DIR with a dotenv escape", {"LOG_DIR": '"/tmp/fund\\nlogs"'},
     "LOG_DIR holds a control character"),
    ("DATA_DIR relative", {"DATA_DIR": "data", "LOG_DIR": None},
     "DATA_DIR='data' is a relative path"),
    ("DATA_DIR too long for MAX_PATH", {"DATA_DIR": "/tmp/" + "x" * 170, "LOG_DIR": None},
     "over Windows' limit of 260"),
    ("REQUESTS_CA_BUNDLE missing", {"REQUESTS_CA_BUNDLE": "/nope/ca.pem"},
     "REQUESTS_CA_BUNDLE='/nope/ca.pem': no such file"),
    ("HOST with a port", {"HOST": "sftp.example:2222", "SFTP_ID": "u", "SFTP_PW": "p",
                          "SFTP_BASE_DIR": "/in"},
     "HOST='sftp.example:2222' holds a port: write HOST=sftp.example and PORT=2222"),
]  # fmt: skip


def env_text(values: dict) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items() if v is not None)


@pytest.mark.parametrize(("case", "changes", "message"), ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_env_cases(graph, data_dir, tmp_path, case, changes, message):
    env = tmp_path / ".env"
    env.write_text(env_text({**graph.env_values(data_dir), **changes}))
    result = run_cli("fund_mail_once", "--env-file", str(env))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert graph.registration.client_secret not in result.stderr
    assert not data_dir.exists() and graph.records() == [], "nothing touched, nothing asked"
    CASES_RUN.append(case)


def test_timezone_that_is_a_region_folder(graph, data_dir, tmp_path):
    """With the bundled tzdata (as on Windows) "Asia" is a folder: opening it raised OSError."""
    env = graph.write_env(tmp_path / ".env", data_dir, TIMEZONE="Asia")
    result = run_cli("fund_mail_once", "--env-file", str(env), env={"PYTHONTZPATH": ""})
    assert result.returncode == 2, result.stderr
    assert "TIMEZONE='Asia' is not an IANA time zone: use a full name such as Asia/Seoul" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    CASES_RUN.append("TIMEZONE a region folder")


def test_untrusted_certificate_is_a_certificate_problem(graph, data_dir, tmp_path):
    """A CA bundle that does not hold the server's CA: exit 2 naming REQUESTS_CA_BUNDLE, not a
    sign-in or tenant error. The .env's bundle wins over the environment variable."""
    import certifi

    env = graph.write_env(tmp_path / ".env", data_dir, REQUESTS_CA_BUNDLE=certifi.where())
    result = run_cli("fund_mail_once", "--env-file", str(env))
    assert result.returncode == 2, result.stderr
    assert "REQUESTS_CA_BUNDLE: the certificate of 127.0.0.1 is not trusted" in result.stderr
    assert "TENANT_ID" not in result.stderr and "Traceback" not in result.stderr
    CASES_RUN.append("certificate not trusted")


@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe\x00\x01 not text", b"=\n==\nKEY"],
    ids=["empty file", "not UTF-8", "no key names"],
)
def test_unreadable_env_files(tmp_path, content):
    env = tmp_path / ".env"
    env.write_bytes(content)
    result = run_cli("fund_mail_once", "--env-file", str(env))
    assert result.returncode == 2 and "Configuration problem" in result.stderr
    assert "Traceback" not in result.stderr
    CASES_RUN.append(f".env {content[:8]!r}")


def test_data_dir_that_is_a_file(graph, tmp_path):
    (tmp_path / "occupied").write_text("x")
    env = graph.write_env(tmp_path / ".env", tmp_path / "occupied" / "data")
    result = run_cli("fund_mail_once", "--env-file", str(env))
    assert result.returncode == 2 and "is not a folder" in result.stderr
    CASES_RUN.append("DATA_DIR under a file")


@pytest.mark.skipif(
    shutil.which("setpriv") is None or os.geteuid() != 0,
    reason="needs root and setpriv: the run drops root's right to ignore permissions "
    "(a non-root machine runs tests/test_config.py::test_unwritable_data_dir instead)",
)
def test_data_dir_not_writable(graph, tmp_path):
    """Root may write anywhere; the run is started without that right (CAP_DAC_OVERRIDE), so
    a folder it owns but may not write is as closed to it as to any user."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    env = graph.write_env(tmp_path / ".env", locked / "data")
    dropped = "-dac_override,-dac_read_search"
    result = subprocess.run(
        [
            "setpriv",
            f"--bounding-set={dropped}",
            f"--inh-caps={dropped}",
            str(BIN / "fund_mail_once"),
            "--env-file",
            str(env),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    locked.chmod(0o755)
    assert result.returncode == 2, result.stderr
    assert "DATA_DIR" in result.stderr and "is not writable" in result.stderr
    assert not (locked / "data").exists()
    assert graph.records() == [], "nothing was asked of Graph"
    CASES_RUN.append("DATA_DIR not writable")


# -- LAST_TIME.json ---------------------------------------------------------------------------
STATE_CASES = [
    ("truncated", "{\"last_email_id\": \"x\", \"last_fe"),
    ("empty", ""),
    ("wrong types", json.dumps({"last_email_id": 5, "last_fetch_time": 12345})),
    ("not an object", json.dumps(["2025-06-30T00:00:00Z"])),
    ("cursor in the future", json.dumps({"last_email_id": "x",
                                         "last_fetch_time": "2099-01-01T00:00:00Z"})),
    ("year 0001", json.dumps({"last_email_id": "x", "last_fetch_time": "0001-01-01T00:00:00Z"})),
    ("year 0001 with an offset", json.dumps({"last_email_id": "x",
                                             "last_fetch_time": "0001-01-01T00:00:00+09:00"})),
    ("out of range", json.dumps({"last_email_id": "x",
                                 "last_fetch_time": "9999-12-31T23:59:59-01:00"})),
    ("archive floor in the future", json.dumps({"last_email_id": "x",
                                                "last_fetch_time": "2025-06-30T00:00:00Z",
                                                "archive_floor": "2099-01-01T00:00:00Z"})),
]  # fmt: skip


@pytest.mark.parametrize(("case", "content"), STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_corrupt_state_is_a_clear_error_never_a_reset(
    env_file, graph, data_dir, now, case, content
):
    data_dir.mkdir(parents=True)
    (data_dir / "LAST_TIME.json").write_text(content)
    graph.mailbox.add_message(now)
    result = run_cli("fund_mail_once", "--env-file", str(env_file))
    assert result.returncode == 6 and "--since" in result.stderr, result.stderr
    assert (data_dir / "LAST_TIME.json").read_text() == content, "left as it was"
    assert archived_rows(data_dir) == []
    CASES_RUN.append(f"LAST_TIME.json {case}")


@pytest.mark.parametrize("since", ["2099-01-01", "2099-01-01T09:00+09:00", "0001-01-01T00:00"])
def test_since_in_the_future_or_out_of_range(env_file, graph, data_dir, since):
    result = run_cli("fund_mail_once", "--env-file", str(env_file), "--since", since)
    assert result.returncode == 2, result.stderr
    assert f"--since {since!r}" in result.stderr and "Traceback" not in result.stderr
    assert not (data_dir / "LAST_TIME.json").exists() and graph.records() == []
    CASES_RUN.append(f"--since {since}")


def test_state_file_replaced_by_a_folder(env_file, data_dir):
    (data_dir / "LAST_TIME.json").mkdir(parents=True)
    result = run_cli("fund_mail_once", "--env-file", str(env_file))
    assert result.returncode == 6
    CASES_RUN.append("LAST_TIME.json is a folder")


# -- odd messages -------------------------------------------------------------------------------
HUGE = "<p>" + "가나다라 fund " * 400_000 + "</p>"  # about 5 MB of HTML
MESSAGE_CASES = [
    ("no from", {"from_": None}),
    ("no sender and no from", {"from_": None, "sender": None}),
    ("no recipients", {"to": [], "cc": []}),
    ("no subject", {"subject": None}),
    ("empty body", {"body_html": ""}),
    ("huge body", {"body_html": HUGE}),
    ("non-ASCII everywhere", {"subject": "펀드 ✓ Ünïcödé", "from_": ("김민준 🙂", "민준@예시.kr"),
                              "to": [("이서연", "서연@예시.kr")], "folder": "Inbox/운용/2025"}),
]  # fmt: skip


def files_outside(root: Path, data_dir: Path) -> set[str]:
    return {
        str(p)
        for p in root.rglob("*")
        if p.is_file() and data_dir not in p.parents and "tls" not in p.parts
    }


@pytest.mark.parametrize(("case", "fields"), MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES])
def test_odd_messages_are_archived(config, graph, now, tmp_path, case, fields):
    graph.mailbox.add_folder("운용", parent="inbox")
    graph.mailbox.add_folder("2025", parent="Inbox/운용")
    run_once(config)
    outside = files_outside(tmp_path, config.data_dir)
    fields = dict(fields)
    message = graph.mailbox.add_message(
        now + timedelta(minutes=1), folder=fields.pop("folder", "inbox"), **fields
    )
    run_once(config)
    rows = archived_rows(config.data_dir)
    assert [r["email_id"] for r in rows] == [message.immutable_id]
    row = rows[0]
    if case == "non-ASCII everywhere":
        assert row["subject"] == "펀드 ✓ Ünïcödé" and row["from_name"] == "김민준 🙂"
        assert row["to_recipients"] == "서연@예시.kr" and row["folder_path"] == "Inbox/운용/2025"
    if case == "huge body":
        assert len(row["content"]) == len(HUGE)
    assert files_outside(tmp_path, config.data_dir) == outside
    CASES_RUN.append(f"message: {case}")


def test_malformed_messages_do_not_block_the_mailbox(env_file, graph, data_dir, now):
    """Null or missing fields: archived with a note. Attachments that cannot be stored:
    quarantined with the raw JSON and the error, listed by --status; the run goes on and
    exits 0 with a warning."""
    from fund_mail.archive.cursor import read_cursor

    assert run_cli("fund_mail_once", "--env-file", str(env_file)).returncode == 0
    first = graph.mailbox.add_message(now + timedelta(minutes=1), subject="good 1")
    odd = graph.mailbox.add_message(
        now + timedelta(minutes=2),
        broken={"receivedDateTime": None, "body": None, "from": ..., "sender": None},
    )
    graph.mailbox.add_message(
        now + timedelta(minutes=3), subject="bad", broken={"attachments": [{"name": "x.pdf"}]}
    )
    last = graph.mailbox.add_message(now + timedelta(minutes=4), subject="good 2")
    result = run_cli("fund_mail_once", "--env-file", str(env_file))
    assert result.returncode == 0, result.stderr
    assert "could not be archived (cannot be stored: its attachments list is malformed)" in (
        result.stderr
    )
    assert "1 message(s) set aside in DATA_DIR/quarantine" in result.stdout
    rows = {r["email_id"]: r for r in archived_rows(data_dir)}
    assert set(rows) == {first.immutable_id, odd.immutable_id, last.immutable_id}
    assert rows[odd.immutable_id]["email_time"] == ""
    assert (
        "missing in Graph's answer: from, sender, receivedDateTime, body"
        in (rows[odd.immutable_id]["note"])
    )
    [held] = (data_dir / "quarantine").iterdir()
    record = json.loads(held.read_text(encoding="utf-8"))
    assert record["message"]["subject"] == "bad" and "attachments" in record["error"]
    assert read_cursor(data_dir).last_email_id == last.immutable_id
    status = run_cli("fund_mail_once", "--env-file", str(env_file), "--status")
    assert "quarantine:        1 message(s) could not be stored" in status.stdout
    again = run_cli("fund_mail_once", "--env-file", str(env_file))
    assert again.returncode == 0 and "quarantine" not in again.stdout
    assert len(archived_rows(data_dir)) == 3 and len(list(held.parent.iterdir())) == 1
    CASES_RUN.extend(["message with null fields", "message with malformed attachments"])


def test_a_message_without_an_id_is_quarantined_not_dropped(env_file, graph, data_dir, now):
    """Paging cannot use an item without an id, and the archive cannot key it: it is set aside
    with its raw JSON, and the mail around it is archived."""
    assert run_cli("fund_mail_once", "--env-file", str(env_file)).returncode == 0
    good = graph.mailbox.add_message(now + timedelta(minutes=1), subject="good")
    graph.mailbox.add_message(now + timedelta(minutes=2), subject="no id", broken={"id": None})
    result = run_cli("fund_mail_once", "--env-file", str(env_file))
    assert result.returncode == 0, result.stderr
    assert "1 message(s) set aside in DATA_DIR/quarantine" in result.stdout
    [held] = (data_dir / "quarantine").iterdir()
    assert json.loads(held.read_text(encoding="utf-8"))["message"]["subject"] == "no id"
    assert [r["email_id"] for r in archived_rows(data_dir)] == [good.immutable_id]
    CASES_RUN.append("message without an id")


def test_non_ascii_data_dir(graph, tmp_path, now):
    from fund_mail.config import config_from_values

    config = config_from_values(graph.env_values(tmp_path / "자료 보관" / "data"))
    run_once(config)
    graph.mailbox.add_message(
        now + timedelta(minutes=1), attachments=[file_attachment("보고서.pdf", b"x")]
    )
    assert run_once(config).db_path.parent.parent == tmp_path / "자료 보관" / "data"
    CASES_RUN.append("non-ASCII DATA_DIR")


def test_data_dir_with_uri_characters(graph, sftp_server, tmp_path, now):
    """#, ?, % and spaces in DATA_DIR: delivery and --status open the DBs read-only by URI."""
    from fund_mail.admin.status import status_report
    from fund_mail.config import config_from_values
    from fund_mail.engine import deliver

    values = graph.env_values(tmp_path / "a #1? 100% b" / "data", RETRY_BACKOFF="0.05")
    values.update(sftp_server.env(tmp_path / "known_hosts"))
    config = config_from_values(values)
    run_once(config)
    graph.mailbox.add_message(
        now + timedelta(minutes=1), attachments=[file_attachment("보고서.pdf", b"%PDF")]
    )
    run_once(config)
    assert deliver(config).delivered_files == 2
    assert "upload queue:      empty" in status_report(config)
    CASES_RUN.append("DATA_DIR with # ? % and spaces")


# -- hostile attachment names -------------------------------------------------------------------
NAMES = [
    "../../etc/passwd", "..\\..\\Windows\\win.ini", "/abs/path.pdf", "CON", "NUL.txt", "com1.doc",
    'a:b*c?"<>|.pdf', "x" * 300 + ".pdf", "📈 실적.xlsx", "trailing dot.", None, "",
]  # fmt: skip


def test_hostile_attachment_names_stay_inside_data_dir(config, graph, now, tmp_path):
    run_once(config)
    outside = files_outside(tmp_path, config.data_dir)
    attachments = [file_attachment(name, f"content {i}".encode()) for i, name in enumerate(NAMES)]
    attachments += [
        file_attachment("same.pdf", b"first"),
        file_attachment("same.pdf", b"second"),
        file_attachment("empty.bin", b""),
        item_attachment(None, inner_message("Re: x", ("A", "a@x.kr"), "<p>x</p>")),
        reference_attachment("../link.docx", "https://example.com/link.docx"),
    ]
    message = graph.mailbox.add_message(now + timedelta(minutes=1), attachments=attachments)
    run_once(config)
    rows = archived_rows(config.data_dir, "fund_mail_attach")
    assert len(rows) == len(attachments) - 1, "every file attachment and the item attachment"
    assert [r["org_file_name"] for r in rows[: len(NAMES)]] == [n or "" for n in NAMES]
    attach_dirs = {r["save_folder"] for r in rows}
    assert len(attach_dirs) == 1
    on_disk = {p.name: p.stat().st_size for p in (config.data_dir / attach_dirs.pop()).iterdir()}
    for row in rows:
        assert is_windows_safe(row["phy_file_name"]) and len(row["phy_file_name"]) <= 31
        assert on_disk[row["phy_file_name"]] == row["file_size"]
    assert sorted(r["file_size"] for r in rows if r["org_file_name"] == "same.pdf") == [5, 6]
    assert files_outside(tmp_path, config.data_dir) == outside
    note = archived_rows(config.data_dir)[0]["note"]
    assert "link-only attachment (not downloadable): ../link.docx" in note
    assert message.immutable_id == rows[0]["email_id"]
    CASES_RUN.extend(f"attachment name {n!r}" for n in NAMES)
    CASES_RUN.extend(
        ["duplicate names", "0-byte file", "unnamed item attachment", "reference with a path"]
    )


@pytest.fixture(scope="module", autouse=True)
def print_the_count():
    """After the module's tests: print the figure RELIABILITY.md quotes (seen with -s)."""
    yield
    print(
        f"\nbad-input catalog: {len(CASES_RUN)} cases tried, each a clear error or safe "
        "handling, lost 0, written outside DATA_DIR 0"
    )
