"""`paymentd serve --ssl-certfile --ssl-keyfile` as an operator runs it: a real process
(two workers) with a certificate from a test CA. TLS 1.2 and 1.3 are served with
forward-secret AEAD ciphers, TLS 1.1 and plain HTTP are not, every response says
Strict-Transport-Security, and the sandbox simulator's webhooks arrive over TLS."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from tests.e2e.test_cli import PAYMENTD, clean_env, free_port, run


@dataclass
class TLSServer:
    url: str
    port: int
    ca: Path
    key: str
    sim_url: str
    cert: Path
    keyfile: Path
    log: Path


def tls_client_context(ca: Path, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if version is not None:
        # The client must be able to offer an old version (OpenSSL 3 hides TLS < 1.2
        # below security level 0), so that a refusal is the server's.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = context.maximum_version = version
    return context


def handshake(port: int, context: ssl.SSLContext) -> tuple[str, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.version() or "", tls.cipher()[0]


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = folder / "chain.pem", folder / "key.pem", folder / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    log = folder / "serve.log"
    process = subprocess.Popen(
        [PAYMENTD, "serve", "--port", str(port), "--workers", "2", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
         "--forwarded-allow-ips", "127.0.0.1"],
        env=clean_env(DATABASE_URL=database_url, PAYMENTD_RECONCILE_INTERVAL_S="3600"),
        stderr=log.open("w"), stdout=subprocess.DEVNULL)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"paymentd serve exited early:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/readyz", verify=tls_client_context(ca_file), timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"never ready:\n{log.read_text()}"
            time.sleep(0.3)
        text = log.read_text()
        assert f"paymentd listening on {url}" in text
        demo_key = re.search(r"demo API key .*: (pd_\S+)", text).group(1)  # type: ignore[union-attr]
        sim_url = re.search(r"Stripe simulator at (http://[0-9.]+:[0-9]+)", text).group(1)  # type: ignore[union-attr]
        yield TLSServer(url, port, ca_file, demo_key, sim_url, cert, key, log)
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_tls_12_and_13_are_served_with_forward_secret_aead(served: TLSServer) -> None:
    version, cipher = handshake(served.port, tls_client_context(served.ca, ssl.TLSVersion.TLSv1_2))
    assert version == "TLSv1.2"
    assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher), cipher
    assert handshake(served.port, tls_client_context(served.ca))[0] == "TLSv1.3"


@contextmanager
def permissive_server(served: TLSServer) -> Iterator[int]:
    """A control: a TLS server that does accept TLS 1.0 and 1.1, with paymentd's own
    certificate, so a refusal by paymentd cannot be the client's inability to offer them."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.load_cert_chain(served.cert, served.keyfile)
    listener = socket.create_server(("127.0.0.1", 0))

    def accept_one() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
            pass

    thread = threading.Thread(target=accept_one, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(timeout=5)


# Offering TLS 1.0/1.1 on purpose: Python rightly calls them deprecated.
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1], ids=["tls1.1", "tls1.0"])
def test_older_tls_is_refused_by_the_server(served: TLSServer, version: ssl.TLSVersion) -> None:
    client = tls_client_context(served.ca, version)
    with permissive_server(served) as control_port:
        assert handshake(control_port, client)[0] == version.name.replace("v1_", "v1.")  # the client can
    with pytest.raises(ssl.SSLError):
        handshake(served.port, client)  # paymentd will not


def test_a_tls_12_client_limited_to_cbc_ciphers_is_refused(served: TLSServer) -> None:
    context = tls_client_context(served.ca, ssl.TLSVersion.TLSv1_2)
    context.set_ciphers("ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:AES128-SHA:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        handshake(served.port, context)


def test_plain_http_is_not_served(served: TLSServer) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{served.port}/healthz", timeout=5)


def test_every_response_over_tls_says_strict_transport_security(served: TLSServer) -> None:
    with httpx.Client(base_url=served.url, verify=tls_client_context(served.ca), timeout=30) as client:
        responses = [client.get("/healthz"), client.get("/metrics"), client.get("/api/payments/history"),
                     client.get("/no/such/route"),
                     client.post("/api/users", content=b"[" * 400_000, headers={"Content-Type": "application/json"})]
        for response in responses:
            assert response.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
            assert response.headers["x-content-type-options"] == "nosniff"
        assert [r.status_code for r in responses] == [200, 200, 401, 404, 400]


def test_sandbox_webhooks_arrive_over_tls(served: TLSServer) -> None:
    auth = {"Authorization": f"Bearer {served.key}"}
    with httpx.Client(base_url=served.url, verify=tls_client_context(served.ca), timeout=30, headers=auth) as client:
        user = client.post("/api/users", json={"email": "tls@example.com", "name": "T"}).json()
        payment = client.post("/api/payments/create", json={"user_id": user["id"], "amount": "9.00"}).json()
        confirmed = client.post("/api/payments/confirm", json={"payment_id": payment["id"],
                                                               "payment_method": "pm_card_visa"})
        assert confirmed.status_code == 200, confirmed.text
    deadline = time.monotonic() + 20
    while True:
        attempts = httpx.get(f"{served.sim_url}/_sim/webhooks").json()["data"]
        delivered = [a for a in attempts if a["status"] == 200]
        if delivered:
            break
        assert time.monotonic() < deadline, attempts[-3:]
        time.sleep(0.2)
    assert all(a["url"].startswith(f"{served.url}/") for a in attempts)


def test_serve_refuses_an_incomplete_or_missing_tls_configuration(tmp_path: Path) -> None:
    """Through the environment (config.py) as through the flags; before starting anything."""
    missing = run("serve", env=clean_env(PAYMENTD_SSL_CERTFILE=str(tmp_path / "none.pem")))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    no_cert = run("serve", env=clean_env(PAYMENTD_SSL_KEYFILE=str(tmp_path / "key.pem")))
    assert no_cert.returncode == 2 and "--ssl-keyfile needs --ssl-certfile" in no_cert.stderr


def test_logs_key_on_the_server_id_with_the_callers_beside_it(served: TLSServer) -> None:
    """The process's own JSON log lines: the server id is `request_id`, the caller's
    X-Request-Id only `caller_request_id`, even when two requests share it."""
    with httpx.Client(base_url=served.url, verify=tls_client_context(served.ca), timeout=30) as client:
        responses = [client.get("/healthz", headers={"X-Request-Id": "trace-from-client-42"}) for _ in range(2)]
    ours = [r.headers["paymentd-request-id"] for r in responses]
    assert len(set(ours)) == 2
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in served.log.read_text().splitlines() if line.startswith("{")]
        logged = [line for line in lines if line.get("caller_request_id") == "trace-from-client-42"]
        if len(logged) >= 2:
            break
        assert time.monotonic() < deadline, lines[-5:]
        time.sleep(0.2)
    assert sorted(line["request_id"] for line in logged) == sorted(ours)
    assert all(line["event"] == "request" and line["path"] == "/healthz" for line in logged)
    assert all(line["client_ip"] == "127.0.0.1" for line in logged)


def test_behind_a_trusted_proxy_the_client_is_the_nearest_untrusted_address(served: TLSServer) -> None:
    """127.0.0.1 is the trusted proxy here (--forwarded-allow-ips): the address it
    appended is believed, what the client put before it is not."""
    forwarded = {"X-Forwarded-For": "198.51.100.66, 203.0.113.9", "X-Request-Id": "trace-behind-proxy"}
    with httpx.Client(base_url=served.url, verify=tls_client_context(served.ca), timeout=30) as client:
        assert client.get("/healthz", headers=forwarded).status_code == 200
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in served.log.read_text().splitlines() if line.startswith("{")]
        logged = [line for line in lines if line.get("caller_request_id") == "trace-behind-proxy"]
        if logged:
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert logged[0]["client_ip"] == "203.0.113.9"
