"""msal against the emulator's token endpoint, over real TLS."""

import dataclasses
import time

import pytest

from fund_mail.errors import AuthError
from fund_mail.graph.auth import TokenProvider, TokensAhead, describe_token_error


def test_client_credentials_token(config, graph):
    token = TokenProvider(config).token()
    assert token and graph.records("token")[0].status == 200
    # A local authority: msal skipped instance discovery and went straight to OIDC discovery.
    assert [r.target for r in graph.records()][:2] == ["discovery", "token"]
    assert graph.records("discovery")[0].path.endswith("/v2.0/.well-known/openid-configuration")


def test_wrong_secret_names_the_fix(config, graph):
    config = dataclasses.replace(config, client_secret="wrong-secret-value")
    with pytest.raises(AuthError) as caught:
        TokenProvider(config).token()
    message = str(caught.value)
    assert "AADSTS7000215" in message and "secret's Value" in message
    assert "wrong-secret-value" not in message


def test_unknown_client_id(config, graph):
    config = dataclasses.replace(config, client_id="00000000-0000-0000-0000-000000000001")
    with pytest.raises(AuthError, match="CLIENT_ID is not known"):
        TokenProvider(config).token()


def test_unknown_tenant_fails_at_discovery(config, graph):
    config = dataclasses.replace(config, tenant_id="no-such-tenant")
    with pytest.raises(AuthError, match="TENANT_ID"):
        TokenProvider(config).token()


def test_unreachable_authority_is_a_run_failure(config, graph):
    from fund_mail.errors import RunFailed

    config = dataclasses.replace(config, authority_host="https://127.0.0.1:9")
    with pytest.raises(RunFailed, match="Could not reach the sign-in endpoint"):
        TokenProvider(config).token()


def test_discovery_cut_off_mid_body_is_retried(config, graph):
    graph.add_fault("reset", target="discovery", times=1)
    assert TokenProvider(config).token()
    assert [r.status for r in graph.records("discovery")] == [200, 200]


def test_describe_token_error_without_a_known_code():
    text = describe_token_error({"error": "temporarily_unavailable", "error_description": "x"})
    assert "temporarily_unavailable" in text and "Check TENANT_ID" in text


def test_a_busy_sign_in_endpoint_is_retried(config, graph, monkeypatch):
    import fund_mail.graph.auth

    # msal replays a throttled answer for its Retry-After ("1" s here), so wait that out.
    graph.add_fault("throttle", target="token", times=1, retry_after="1")
    monkeypatch.setattr(
        fund_mail.graph.auth,
        "TOKEN_ANSWERS",
        dataclasses.replace(fund_mail.graph.auth.TOKEN_ANSWERS, backoff=1.1),
    )
    assert TokenProvider(config).token()
    assert [r.status for r in graph.records("token")] == [429, 200]


def test_a_sign_in_endpoint_that_stays_down_is_a_run_failure_not_a_config_error(
    config, graph, monkeypatch
):
    import fund_mail.graph.auth
    from fund_mail.errors import ExitCode, RunFailed

    monkeypatch.setattr(
        fund_mail.graph.auth,
        "TOKEN_ANSWERS",
        dataclasses.replace(fund_mail.graph.auth.TOKEN_ANSWERS, backoff=0.01),
    )
    graph.add_fault("unavailable", target="token", times=None)
    with pytest.raises(RunFailed, match="temporarily unavailable") as caught:
        TokenProvider(config).token()
    assert caught.value.exit_code == ExitCode.RUN_FAILED


def _certificate(tmp_path, days=30):
    """A self-signed certificate and key, as an app registration's uploaded certificate."""
    import base64
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fund_mail")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "app.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    pfx = tmp_path / "app.pfx"
    pfx.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"fund_mail", key, cert, None, serialization.BestAvailableEncryption(b"pfx-pass")
        )
    )
    thumbprints = {
        base64.urlsafe_b64encode(cert.fingerprint(h)).decode().rstrip("=")
        for h in (hashes.SHA1(), hashes.SHA256())
    }
    return pem, pfx, thumbprints


@pytest.mark.parametrize("kind", ["pem", "pfx"])
def test_certificate_instead_of_a_secret(config, graph, tmp_path, kind):
    pem, pfx, thumbprints = _certificate(tmp_path)
    graph.registration.certificate_thumbprints.update(thumbprints)
    path, password = (pem, "") if kind == "pem" else (pfx, "pfx-pass")
    config = dataclasses.replace(
        config, client_secret="", client_cert_path=str(path), client_cert_password=password
    )
    assert TokenProvider(config).token()
    graph.registration.certificate_thumbprints.clear()  # a certificate the app does not know
    with pytest.raises(AuthError, match="AADSTS700027"):
        TokenProvider(config).token()


def test_the_discovery_answer_is_kept_as_json_and_reused_until_it_expires(config, graph):
    import json

    from fund_mail.graph import discovery

    config.data_dir.mkdir(parents=True)
    TokenProvider(config).token()
    cached = config.data_dir / discovery.CACHE_NAME
    entry = json.loads(cached.read_text(encoding="utf-8"))  # plain JSON, not a pickle
    assert entry["url"].endswith("/v2.0/.well-known/openid-configuration")
    assert "token_endpoint" in json.loads(entry["body"])
    graph.reset_log()
    TokenProvider(config).token()
    assert [r.target for r in graph.records()] == ["token"]
    entry["expires_at"] = 0  # expired: asked again, and kept afresh
    cached.write_text(json.dumps(entry), encoding="utf-8")
    graph.reset_log()
    TokenProvider(config).token()
    assert [r.target for r in graph.records()] == ["discovery", "token"]
    assert json.loads(cached.read_text(encoding="utf-8"))["expires_at"] > 0


def test_a_damaged_discovery_cache_is_asked_again(config, graph):
    from fund_mail.graph import discovery

    config.data_dir.mkdir(parents=True)
    (config.data_dir / discovery.CACHE_NAME).write_bytes(b"\x80\x04not json")
    assert TokenProvider(config).token()
    assert [r.target for r in graph.records()] == ["discovery", "token"]


def test_a_failed_sign_in_forgets_the_discovery_answer(config, graph):
    from fund_mail.graph import discovery

    config.data_dir.mkdir(parents=True)
    TokenProvider(config).token()
    assert (config.data_dir / discovery.CACHE_NAME).exists()
    with pytest.raises(AuthError):
        TokenProvider(dataclasses.replace(config, client_secret="wrong-secret-value")).token()
    assert not (config.data_dir / discovery.CACHE_NAME).exists()


def test_the_bearer_token_is_a_cached_string_renewed_ahead_of_expiry(config, graph):
    from fund_mail.graph import auth

    tokens = TokenProvider(config)
    first = tokens.bearer()
    assert all(tokens.bearer() == first for _ in range(20))
    assert len(graph.records("token")) == 1
    # Inside RENEW_AHEAD of its expiry the string is not handed out again: msal is asked.
    token, renew_after = tokens._cached
    tokens._cached = (token, renew_after - 3600)
    calls = []
    original = tokens.token
    tokens.token = lambda force_refresh=False: calls.append(force_refresh) or original()
    tokens.bearer()
    assert calls == [False]
    assert auth.RENEW_AHEAD > 0


def test_a_sign_in_that_keeps_failing_forgets_the_discovery_answer(config, graph, monkeypatch):
    import fund_mail.graph.auth
    from fund_mail.errors import RunFailed
    from fund_mail.graph import discovery

    config.data_dir.mkdir(parents=True)
    TokenProvider(config).token()
    assert (config.data_dir / discovery.CACHE_NAME).exists()
    tokens = TokenProvider(config)  # built from the kept answer
    monkeypatch.setattr(
        fund_mail.graph.auth,
        "TOKEN_ANSWERS",
        dataclasses.replace(fund_mail.graph.auth.TOKEN_ANSWERS, backoff=0.01),
    )
    graph.add_fault("unavailable", target="token", times=None)
    with pytest.raises(RunFailed):
        tokens.token()
    # The endpoints it named may have moved: the next run asks for them again.
    assert not (config.data_dir / discovery.CACHE_NAME).exists()


def test_sign_in_ahead_asks_for_the_token_before_anything_needs_it(config, graph):
    tokens = TokensAhead(config)
    deadline = time.monotonic() + 10
    while not graph.records("token") and time.monotonic() < deadline:
        time.sleep(0.01)  # no one has asked for a token yet
    assert graph.records("token"), "the sign-in did not start on its own"
    assert tokens.bearer() == tokens.bearer()
    assert len(graph.records("token")) == 1


def test_sign_in_ahead_raises_its_failure_where_the_token_is_needed(config, graph):
    config = dataclasses.replace(config, client_secret="wrong-secret-value")
    tokens = TokensAhead(config)  # the failure happens on the thread, and waits there
    with pytest.raises(AuthError, match="AADSTS7000215"):
        tokens.bearer()
