"""TLS for Graph and the sign-in endpoint: the CA bundle is loaded once per process, and every
connection still verifies the server against it."""

import ssl

import certifi
import pytest
import requests

from fund_mail.graph.retry import SharedTrustAdapter, graph_policy, https_session, trust_context


@pytest.fixture
def bundle_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The CA bundles loaded into any TLS context from now on."""
    trust_context.cache_clear()
    loads: list[str] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(self, cafile=None, capath=None, cadata=None):
        loads.append(str(cafile or capath or "data"))
        return load(self, cafile, capath, cadata)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    yield loads
    trust_context.cache_clear()


def test_connections_share_one_loaded_bundle(graph, bundle_loads):
    # One session per thread, as the download workers have: three pools, three connections.
    for _ in range(3):
        session = https_session(graph_policy(0.05), str(graph.tls.ca_cert))
        answer = session.get(f"{graph.url}/v1.0/users/x/messages", timeout=10)
        assert answer.status_code == 401  # no token: the TLS part is what is tested here
        session.close()
    assert bundle_loads == [str(graph.tls.ca_cert)]


def test_a_server_the_bundle_does_not_trust_is_refused(graph, bundle_loads, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    session = https_session(graph_policy(0.05), certifi.where())
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"{graph.url}/v1.0/users/x/messages", timeout=10)


def test_the_shared_context_checks_certificates_and_host_names(graph):
    context = trust_context(str(graph.tls.ca_cert))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_a_bundle_that_cannot_be_read_is_reported_as_before(graph, tmp_path, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    not_pem = tmp_path / "bundle.pem"
    not_pem.write_text("not a certificate")
    with pytest.raises(requests.exceptions.SSLError):
        https_session(graph_policy(0.05), str(not_pem)).get(graph.url, timeout=10)
    with pytest.raises(OSError, match="invalid path"):
        https_session(graph_policy(0.05), str(tmp_path / "missing.pem")).get(graph.url, timeout=10)


def test_a_client_certificate_keeps_a_context_of_its_own(graph):
    """urllib3 loads a client certificate into the pool's context: never into the shared one."""
    adapter = SharedTrustAdapter()
    request = requests.Request("GET", f"{graph.url}/x").prepare()
    bundle = str(graph.tls.ca_cert)
    _, shared = adapter.build_connection_pool_key_attributes(request, bundle)
    _, own = adapter.build_connection_pool_key_attributes(request, bundle, cert="client.pem")
    assert shared["ssl_context"] is trust_context(bundle) and "ca_certs" not in shared
    assert "ssl_context" not in own and own["ca_certs"] == bundle
