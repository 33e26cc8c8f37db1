"""The shared Stripe limiter over `rediss://`: a throwaway redis-server speaking only
TLS with a test CA's certificate. With the CA named in the URL two limiters share
one window through it; with another CA, or none (the system's trust store), the
connection is refused and each process falls back to its own window."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from paymentd.providers.limiter import OutboundRateLimited, StripeRateLimiter

RPS = 3


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server on PATH to start a TLS server with")
    folder = tmp_path_factory.mktemp("tlsredis")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = {name: str(folder / name) for name in ("ca.pem", "other-ca.pem", "cert.pem", "key.pem")}
    ca.cert_pem.write_to_path(paths["ca.pem"])
    trustme.CA().cert_pem.write_to_path(paths["other-ca.pem"])
    cert.cert_chain_pems[0].write_to_path(paths["cert.pem"])
    cert.private_key_pem.write_to_path(paths["key.pem"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", paths["cert.pem"], "--tls-key-file", paths["key.pem"],
         "--tls-ca-cert-file", paths["ca.pem"], "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 10
    while True:
        if server.poll() is not None:
            output = server.stdout.read() if server.stdout else ""
            if "TLS" in output and ("not supported" in output or "Bad directive" in output):
                pytest.skip("this redis-server is built without TLS")
            raise AssertionError(f"redis-server did not start:\n{output}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "redis-server never listened"
            time.sleep(0.05)
    yield {"url": f"rediss://127.0.0.1:{port}/0", **paths}
    server.terminate()
    server.wait(timeout=10)


async def fill_then_try(first: StripeRateLimiter, second: StripeRateLimiter, *, wait_s: float = 0.05) -> bool:
    """`first` takes the whole window; can `second` still get a slot within `wait_s`?"""
    for _ in range(RPS):
        await first.acquire(time.monotonic() + 2)
    try:
        await second.acquire(time.monotonic() + wait_s)
    except OutboundRateLimited:
        return False
    return True


def limiter(url: str, prefix: str) -> StripeRateLimiter:
    return StripeRateLimiter(RPS, redis_url=url, key_prefix=prefix, spacing_s=0)


async def test_rediss_with_the_right_ca_shares_the_window(tls_redis: dict[str, str]) -> None:
    url = f"{tls_redis['url']}?ssl_ca_certs={tls_redis['ca.pem']}"
    prefix = f"tls-{uuid.uuid4().hex[:8]}"
    one, two = limiter(url, prefix), limiter(url, prefix)
    try:
        assert not await fill_then_try(one, two), "a shared window was not shared"
    finally:
        await one.aclose()
        await two.aclose()


@pytest.mark.parametrize("query", ["?ssl_ca_certs={other}", ""])
async def test_rediss_refuses_a_server_it_cannot_verify(tls_redis: dict[str, str], query: str) -> None:
    """Another CA, or the system's trust store: no connection, so no shared window
    (each process limits itself, as when Redis is down)."""
    url = tls_redis["url"] + query.format(other=tls_redis["other-ca.pem"])
    trusted = f"{tls_redis['url']}?ssl_ca_certs={tls_redis['ca.pem']}"
    prefix = f"tls-{uuid.uuid4().hex[:8]}"
    one, two = limiter(trusted, prefix), limiter(url, prefix)
    try:
        # The refused handshake and the fall-back to a per-process window take longer
        # than 50 ms on a loaded machine; still well inside the shared window's second.
        assert await fill_then_try(one, two, wait_s=0.5), "an unverified Redis was used"
    finally:
        await one.aclose()
        await two.aclose()
