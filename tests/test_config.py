"""Configuration: lookup order, every problem reported at once, secrets never echoed."""

import os
import sys
from pathlib import Path

import pytest

from fund_mail.config import config_from_values, find_env_file, load_config
from fund_mail.errors import ConfigError

GOOD = {
    "EMAIL_ID": "fund@example.com",
    "TENANT_ID": "11111111-2222-3333-4444-555555555555",
    "CLIENT_ID": "66666666-7777-8888-9999-000000000000",
    "CLIENT_SECRET": "s3cret-Value~xyz",
    "EMAIL_PW": "ignored-legacy-password",
}


def good(tmp_path: Path, **changes: str) -> dict:
    values = {**GOOD, "DATA_DIR": str(tmp_path / "data"), "LOG_DIR": str(tmp_path / "logs")}
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def problems(values: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_from_values(values)
    return caught.value.problems


def test_defaults(tmp_path):
    config = config_from_values(good(tmp_path))
    assert config.graph_url == "https://graph.microsoft.com"
    assert config.authority_host == "https://login.microsoftonline.com"
    assert (config.timezone, config.overlap_minutes, config.page_size) == ("Asia/Seoul", 30, 1000)
    assert config.body_content_type == "html" and config.max_concurrency == 4
    assert not config.upload_enabled
    assert not (tmp_path / "data").exists(), "validation must not create anything"


def test_every_problem_is_listed_at_once(tmp_path):
    found = problems(
        {
            "CLIENT_ID": "not-a-guid",
            "OVERLAP_MINUTES": "ten",
            "TIMEZONE": "Mars/Base",
            "GRAPH_URL": "http://graph.example",
            "PAGE_SIZE": "5000",
        }
    )
    text = "\n".join(found)
    for needle in (
        "EMAIL_ID is missing",
        "TENANT_ID is missing",
        "CLIENT_ID='not-a-guid'",
        "CLIENT_SECRET is missing",
        "DATA_DIR is missing",
        "OVERLAP_MINUTES='ten'",
        "TIMEZONE='Mars/Base'",
        "GRAPH_URL='http://graph.example' must be an https",
        "PAGE_SIZE=5000 is out of range",
    ):
        assert needle in text
    assert len(found) == 9


def test_sftp_keys_are_required_once_host_is_set(tmp_path):
    found = problems(good(tmp_path, HOST="sftp.example.com"))
    assert any("SFTP_ID is missing" in p for p in found)
    assert any("SFTP_BASE_DIR is missing" in p for p in found)
    assert any("SFTP_PW is missing" in p for p in found)


def test_host_key_must_be_a_sha256_fingerprint(tmp_path):
    found = problems(good(tmp_path, SFTP_HOST_KEY="aa:bb:cc"))
    assert "ssh-keygen -lf" in found[0]


def test_certificate_is_an_alternative_to_a_secret(tmp_path):
    cert = tmp_path / "app.pfx"
    cert.write_bytes(b"pfx")
    config = config_from_values(good(tmp_path, CLIENT_SECRET="", CLIENT_CERT_PATH=str(cert)))
    assert config.client_cert_path == str(cert)
    assert any(
        "CLIENT_CERT_PATH" in p
        for p in problems(
            good(tmp_path, CLIENT_SECRET="", CLIENT_CERT_PATH=str(tmp_path / "missing.pfx"))
        )
    )


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0,
    reason="root can write anywhere; permissions cannot be denied to it",
)
def test_unwritable_data_dir(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "not writable" in problems(good(tmp_path, DATA_DIR=str(locked / "data")))[0]


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in problems(good(tmp_path, DATA_DIR=str(tmp_path / "file" / "d")))[0]


def test_secrets_are_kept_out_of_repr(tmp_path):
    config = config_from_values(good(tmp_path, SFTP_PW="sftp-pass-123"))
    assert "s3cret" not in repr(config) and "sftp-pass" not in repr(config)
    assert set(config.secrets()) == {"s3cret-Value~xyz", "sftp-pass-123"}


def test_secret_values_never_appear_in_error_messages(tmp_path):
    found = problems(good(tmp_path, CLIENT_ID="bad", SFTP_PW="hunter2-pass", HOST="h"))
    assert "hunter2" not in "\n".join(found) and "s3cret" not in "\n".join(found)


def test_env_file_lookup_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="Copy .env.sample to .env"):
        find_env_file(None)
    (tmp_path / ".env").write_text("EMAIL_ID=cwd@example.com\n")
    assert find_env_file(None) == tmp_path / ".env"
    exe_dir = tmp_path / "exe"
    exe_dir.mkdir()
    (exe_dir / ".env").write_text("EMAIL_ID=exe@example.com\n")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(exe_dir / "fund_mail_once.exe"))
    assert find_env_file(None) == exe_dir / ".env"
    explicit = tmp_path / "other.env"
    explicit.write_text("")
    assert find_env_file(str(explicit)) == explicit
    with pytest.raises(ConfigError, match="no such file"):
        find_env_file(str(tmp_path / "nope.env"))


def test_load_config_reads_dotenv_with_quotes_and_comments(tmp_path):
    env = tmp_path / ".env"
    lines = [f'{k}="{v}"' for k, v in good(tmp_path).items()] + [
        "# a comment",
        "OVERLAP_MINUTES=45",
    ]
    env.write_text("\n".join(lines), encoding="utf-8")
    config = load_config(str(env))
    assert config.overlap_minutes == 45 and config.email_id == "fund@example.com"


def test_imap_with_a_password_needs_no_app_registration(tmp_path):
    values = {
        "SOURCE": "imap",
        "IMAP_HOST": "imap.example.com",
        "IMAP_USER": "fund@example.com",
        "IMAP_PASSWORD": "imap-pass-987",
        "DATA_DIR": str(tmp_path / "data"),
    }
    config = config_from_values(values)
    assert (config.mail_source, config.imap_port, config.imap_tls) == ("imap", 993, "ssl")
    assert config.email_id == "fund@example.com"
    assert "imap-pass-987" in config.secrets() and "imap-pass-987" not in repr(config)


def test_imap_problems_are_listed(tmp_path):
    found = "\n".join(problems(good(tmp_path, SOURCE="imap", IMAP_TLS="none", IMAP_PORT="99999")))
    for needle in ("IMAP_HOST is missing", "IMAP_USER is missing", "IMAP_TLS='none'", "IMAP_PORT"):
        assert needle in found
    assert "CLIENT_SECRET" not in found, "XOAUTH2 uses the app registration, which is complete"
    assert "SOURCE='pop3' must be graph or imap" in "\n".join(
        problems(good(tmp_path, SOURCE="pop3"))
    )


def test_imap_xoauth2_needs_the_app_registration(tmp_path):
    found = "\n".join(
        problems(
            good(
                tmp_path,
                SOURCE="imap",
                IMAP_HOST="outlook.office365.com",
                IMAP_USER="fund@example.com",
                CLIENT_SECRET=None,
            )
        )
    )
    assert "CLIENT_SECRET is missing" in found


def test_a_leading_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    config = config_from_values(good(tmp_path, DATA_DIR="~/fm", LOG_DIR="~/fm/logs"))
    assert config.data_dir == tmp_path / "fm" and config.log_dir == tmp_path / "fm" / "logs"


def test_the_longest_path_the_tool_writes_fits_the_budget():
    from fund_mail.archive.fsutil import partial_path
    from fund_mail.archive.rows import phy_file_name
    from fund_mail.config import LONGEST_RELATIVE_PATH

    name = phy_file_name("m", "a", "x.abcdefghij", "#microsoft.graph.fileAttachment")
    deepest = partial_path(Path("2025_06_30") / "attach" / name)
    import threading

    pid_and_thread = len(f"{os.getpid()}{threading.get_ident()}")
    worst = len(str(deepest)) - pid_and_thread + len(f"{2**32}{2**64}")  # the widest ones
    assert worst <= LONGEST_RELATIVE_PATH


def test_dollar_braces_are_kept_literally(tmp_path, monkeypatch):
    """python-dotenv would replace ${ss} (even inside single quotes): the password must not
    change behind the operator's back."""
    monkeypatch.setenv("ss", "EXPANDED")
    env = tmp_path / ".env"
    lines = [f"{k}={v}" for k, v in good(tmp_path, HOST="sftp.example").items()]
    for written in ("pa${ss}word", "'pa${ss}word'", '"pa${ss}word"'):
        body = lines + ["SFTP_ID=u", "SFTP_BASE_DIR=/in", f"SFTP_PW={written}"]
        env.write_text("\n".join(body) + "\n")
        assert load_config(str(env)).sftp_password == "pa${ss}word"


def test_alert_retention_and_service_keys(tmp_path):
    config = config_from_values(
        good(
            tmp_path,
            ALERT_TO=" ops@example.com, 운영팀@example.com ",
            CLIENT_SECRET_EXPIRES="2026-03-31",
            RETAIN_DAYS="90",
            ALERT_SMTP_HOST="smtp.example.com",
            ALERT_SMTP_USER="alerts@example.com",
            ALERT_SMTP_PASSWORD="smtp-secret-1",
        )
    )
    assert config.alert_to == ("ops@example.com", "운영팀@example.com")
    assert str(config.client_secret_expires) == "2026-03-31"
    assert (config.retain_days, config.interval_minutes, config.alert_repeat_hours) == (90, 5, 12)
    assert "smtp-secret-1" in config.secrets() and "smtp-secret-1" not in repr(config)
    defaults = config_from_values(good(tmp_path))
    assert (defaults.alert_to, defaults.retain_days) == ((), None)


def test_bad_alert_and_retention_keys_are_named_with_the_fix(tmp_path):
    found = problems(
        good(
            tmp_path,
            ALERT_TO="ops@example.com; boss",
            CLIENT_SECRET_EXPIRES="31/03/2026",
            RETAIN_DAYS="0",
            ALERT_SMTP_HOST="smtp.example.com",
            INTERVAL_MINUTES="five",
        )
    )
    text = "\n".join(found)
    assert (
        "ALERT_TO: 'ops@example.com; boss' is not a mail address; separate addresses with commas"
        in text
    )
    assert "CLIENT_SECRET_EXPIRES='31/03/2026' is not a date: use YYYY-MM-DD" in text
    assert "RETAIN_DAYS=0 is out of range (expected 1 to 36500)" in text
    assert "ALERT_SMTP_USER is missing" in text
    assert "INTERVAL_MINUTES='five' is not a whole number" in text


def test_the_sample_env_file_is_valid_once_filled_in(tmp_path):
    sample = Path(__file__).resolve().parents[1] / ".env.sample"
    from dotenv import dotenv_values

    values = {k: v or "" for k, v in dotenv_values(sample).items()}
    values.update(CLIENT_SECRET="x" * 10, DATA_DIR=str(tmp_path / "d"), LOG_DIR="")
    config = config_from_values(values)
    assert config.alert_to == () and config.retain_days is None
