"""TLS at the front (compose/tls.yml, docs/tls.md): a second Mongrel2 front, HTTPS only,
beside the plain one, both feeding the same handlers; both hubs.

Certificates come from mongrel2/make-certs.sh (what `make certs` runs) in a temporary
directory; clients verify against its CA. One stack per hub for the whole module.
"""

from __future__ import annotations

import socket
import ssl
import subprocess

import pytest
import requests

from stack import MONGREL2, ROOT
from support import free_port, require

HUBS = [name for name in MONGREL2 if name in ("mongrel2-gevent", "mongrel2-eventlet")]
TLS12_AEAD = ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
              "ECDHE-ECDSA-CHACHA20-POLY1305")
# Per-response headers that differ between any two requests, and HSTS, which belongs on
# HTTPS answers only.
VARYING = {"date", "x-request-id", "x-handler-id", "strict-transport-security"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    require("openssl", "the TLS test makes its certificates with openssl (make certs)")
    directory = tmp_path_factory.mktemp("tls") / "certs"
    subprocess.run(["sh", str(ROOT / "mongrel2" / "make-certs.sh"), str(directory)],
                   check=True, capture_output=True, text=True, timeout=60)
    return directory


# The eventlet front runs with an override of the suite list, the gevent one with the
# default: each stack shows what its list lets a client negotiate.
OVERRIDE = {"mongrel2-eventlet": ("TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384", ("ECDHE-ECDSA-AES256-GCM-SHA384",))}


@pytest.fixture(scope="module", params=HUBS)
def tls_stack(request, stacks, certs):
    tls_port = free_port()
    ciphers, suites = OVERRIDE.get(request.param, ("", TLS12_AEAD))
    made = stacks.up(request.param, "tls", extra_files=("compose/tls.yml",),
                     env={"TLS_PUBLISH": f"127.0.0.1:{tls_port}",
                          "TLS_CERT": str(certs / "server.crt"),
                          "TLS_KEY": str(certs / "server.key"),
                          "M2_TLS_CIPHERS": ciphers})
    made.tls_port = tls_port
    made.suites = suites
    made.https = requests.Session()
    # Passed with every request: a session's own `verify` loses to REQUESTS_CA_BUNDLE.
    made.ca = str(certs / "ca.crt")
    yield made
    stacks.down(made)


def same_answer(http: requests.Response, https: requests.Response) -> None:
    assert (https.status_code, https.content) == (http.status_code, http.content)
    plain = {k.lower(): v for k, v in http.headers.items() if k.lower() not in VARYING}
    secure = {k.lower(): v for k, v in https.headers.items() if k.lower() not in VARYING}
    assert secure == plain


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])   # an SNI name, and an IP SAN (no SNI)
def test_https_answers_as_http(tls_stack, host):
    base = f"https://{host}:{tls_stack.tls_port}"
    for method, path, body in [("GET", "/json", None), ("GET", "/plaintext", None),
                               ("POST", "/echo", {"a": [1, "é", None]})]:
        http = tls_stack.request(method, path, json=body)
        https = tls_stack.https.request(method, base + path, json=body, timeout=10, verify=tls_stack.ca)
        assert http.status_code == 200, (path, http.text)
        same_answer(http, https)
        assert https.headers["X-Front-Door"] == "mongrel2"
        assert https.headers["X-Hub"] == tls_stack.hub


def test_the_app_sees_https_and_sends_hsts_only_then(tls_stack):
    """Mongrel2 reports URL_SCHEME=https for TLS connections; the app adds HSTS only then."""
    https = tls_stack.https.get(f"https://localhost:{tls_stack.tls_port}/json", timeout=10, verify=tls_stack.ca)
    http = tls_stack.get("/json")
    assert https.headers["Strict-Transport-Security"] == "max-age=63072000"
    assert "Strict-Transport-Security" not in http.headers


def test_https_keeps_connections_alive(tls_stack):
    base = f"https://localhost:{tls_stack.tls_port}"
    for _ in range(20):
        response = tls_stack.https.get(base + "/json", timeout=10, verify=tls_stack.ca)
        assert response.json() == {"message": "Hello, World!"}


def test_unknown_ca_is_rejected_by_the_client(tls_stack):
    """The client check is real: without the generated CA, verification fails."""
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://localhost:{tls_stack.tls_port}/json", timeout=10, verify=True)


def handshake(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        return context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def old_protocol_context(maximum: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers TLS 1.0 up to `maximum` and every cipher the local OpenSSL
    has (security level 0, or OpenSSL 3 refuses to offer TLS < 1.2 at all)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = maximum
    return context


def test_tls_1_2_with_an_aead_suite(tls_stack, certs):
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with handshake(tls_stack.tls_port, context) as tls:
        assert tls.version() == "TLSv1.2"
        assert tls.cipher()[0] in tls_stack.suites


@pytest.mark.parametrize("suite", TLS12_AEAD)
def test_exactly_the_configured_suites_are_negotiated(tls_stack, certs, suite):
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2   # TLS 1.3 suites are not configurable here
    context.set_ciphers(suite)
    if suite in tls_stack.suites:
        with handshake(tls_stack.tls_port, context) as tls:
            assert tls.cipher()[0] == suite
    else:
        with pytest.raises(ssl.SSLError) as refused:
            handshake(tls_stack.tls_port, context).close()
        assert "ALERT" in (refused.value.reason or ""), refused.value


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_0_and_1_1_are_refused(tls_stack):
    # Control: the same permissive client gets through once TLS 1.2 is allowed, so a
    # refusal below is the server's, not this client's inability to connect.
    with handshake(tls_stack.tls_port, old_protocol_context(ssl.TLSVersion.TLSv1_2)) as tls:
        assert tls.version() == "TLSv1.2"
    for maximum in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
        with pytest.raises(ssl.SSLError) as refused:
            handshake(tls_stack.tls_port, old_protocol_context(maximum)).close()
        # The peer's alert (handshake_failure: no suite in common), not a local refusal
        # such as NO_PROTOCOLS_AVAILABLE: the ClientHello went out and was turned down.
        assert "ALERT" in (refused.value.reason or ""), (maximum, refused.value)


def test_plain_http_on_the_tls_port_gets_no_answer(tls_stack):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{tls_stack.tls_port}/json", timeout=5)


def test_key_stays_in_the_tmpfs_private_to_mongrel2(tls_stack):
    """The entrypoint copies the mounted key under this start's server UUID, mode 0600."""
    (front,) = tls_stack.container_ids("mongrel2-tls")
    out = subprocess.run(["docker", "exec", front, "sh", "-c",
                          "stat -c '%a %u %n' /run/mongrel2/certs/*"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    modes = {line.split()[2].rsplit(".", 1)[1]: line.split()[:2] for line in out.stdout.splitlines()}
    assert modes == {"crt": ["600", "10001"], "key": ["600", "10001"]}, out.stdout
