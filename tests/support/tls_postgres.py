"""A throwaway PostgreSQL that speaks only TLS on loopback, with a certificate the
test chooses (trustme), to prove paymentd's connections verify the server.

The pip-installed server of the embedded mode is built without SSL, so this uses
the machine's PostgreSQL binaries (`pg_ctl` on PATH); when there are none, or they
lack SSL too, the tests using it are skipped, saying why. As root, the server runs
as the `postgres` system user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme

SYSTEM_USER = "postgres"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TLSPostgres:
    """A running server; `present()` swaps its certificate (PostgreSQL re-reads it on reload)."""

    def __init__(self, pgdata: Path, port: int, owner: str | None, pg_ctl: list[str]) -> None:
        self.pgdata, self.port, self.owner, self.pg_ctl = pgdata, port, owner, pg_ctl

    def url(self, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres" + (f"?{params}" if params else "")

    def present(self, server_cert: trustme.LeafCert) -> None:
        cert, key = self.pgdata / "server.crt", self.pgdata / "server.key"
        server_cert.private_key_pem.write_to_path(str(key))
        cert.write_bytes(b"".join(blob.bytes() for blob in server_cert.cert_chain_pems))
        key.chmod(0o600)  # PostgreSQL refuses a key others can read
        if self.owner is not None:
            for path in (cert, key):
                shutil.chown(path, self.owner, pwd.getpwnam(self.owner).pw_gid)
        if (self.pgdata / "postmaster.pid").exists():
            self._ctl("reload")

    def _ctl(self, *args: str) -> None:
        run_as = {"user": self.owner} if self.owner is not None and os.geteuid() == 0 else {}
        subprocess.run([*self.pg_ctl, *args], check=True, capture_output=True, timeout=60, **run_as)


@contextmanager
def tls_postgres(server_cert: trustme.LeafCert) -> Iterator[TLSPostgres]:
    """Start a server presenting `server_cert` on 127.0.0.1. Only `hostssl`
    connections are allowed, so nothing can fall back to plain text."""
    found = shutil.which("pg_ctl")
    if found is None:
        pytest.skip("no PostgreSQL binaries (pg_ctl) on PATH to start a TLS server with")
    bin_path = Path(os.path.realpath(found)).parent
    owner = SYSTEM_USER if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="paymentd-tlspg-"))  # under /tmp: traversable by `owner`
    pgdata = root / "pg"
    if owner is not None:
        shutil.chown(root, owner, pwd.getpwnam(owner).pw_gid)
    run_as = {"user": owner} if owner is not None else {}
    subprocess.run([str(bin_path / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True, timeout=120, **run_as)
    handle = TLSPostgres(pgdata, _free_port(), owner, [str(bin_path / "pg_ctl"), "-D", str(pgdata)])
    handle.present(server_cert)
    cert, key = pgdata / "server.crt", pgdata / "server.key"
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write(f"\nssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n"
                   f"listen_addresses = '127.0.0.1'\nport = {handle.port}\nunix_socket_directories = '{pgdata}'\n")
    (pgdata / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 trust\n")
    try:
        try:
            handle._ctl("-w", "-l", str(pgdata / "log"), "start")
        except subprocess.CalledProcessError:
            log = (pgdata / "log").read_text() if (pgdata / "log").exists() else ""
            if "SSL is not supported" in log:
                pytest.skip(f"the PostgreSQL in {bin_path} is built without SSL")
            raise AssertionError(f"PostgreSQL did not start:\n{log}") from None
        try:
            yield handle
        finally:
            handle._ctl("-m", "immediate", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
