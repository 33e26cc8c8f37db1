"""PostgreSQL over TLS with `sslmode=verify-full`, for every kind of connection
paymentd makes: the asyncpg engine (db.py), Alembic (psycopg) and the job queue
(procrastinate on psycopg). A throwaway server with a test CA's certificate shows
each connects, encrypted, with the right CA, and each refuses a certificate from
another CA or one issued for another host."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trustme
from sqlalchemy import text

from paymentd.db import Database
from paymentd.jobs.queue import Jobs, conninfo
from paymentd.migrate import upgrade
from tests.support.tls_postgres import TLSPostgres, tls_postgres

ENCRYPTED = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server(ca: trustme.CA) -> Iterator[TLSPostgres]:
    with tls_postgres(ca.issue_cert("127.0.0.1", "localhost")) as pg:
        yield pg


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cas")
    ours, other = folder / "ca.pem", folder / "other-ca.pem"
    ca.cert_pem.write_to_path(str(ours))
    trustme.CA().cert_pem.write_to_path(str(other))
    return {"ours": ours, "other": other}


async def assert_every_connection_works(url: str) -> None:
    upgrade(url)  # Alembic, through SQLAlchemy's psycopg dialect
    database = Database(url, pool_size=1)
    try:
        async with database.transaction() as session:
            encrypted, version = (await session.execute(text(ENCRYPTED))).one()
        assert encrypted and version in ("TLSv1.2", "TLSv1.3")
        async with database.sql_connection() as driver:  # the hot path's bare asyncpg
            assert (await driver.fetchrow(ENCRYPTED))["ssl"] is True
    finally:
        await database.dispose()
    jobs = Jobs(url)
    await jobs.open()
    try:
        async with jobs.connection() as conn:
            assert (await (await conn.execute(ENCRYPTED)).fetchone())[0] is True
    finally:
        await jobs.close()


async def assert_every_connection_refused(url: str, reason: str) -> None:
    """Each kind of connection fails, and says why (`reason`, a regex: libpq and
    Python's ssl word it differently)."""
    with pytest.raises(Exception) as alembic:
        upgrade(url)
    assert re.search(reason, str(alembic.value)), alembic.value
    database = Database(url, pool_size=1)
    try:
        with pytest.raises(ssl.SSLCertVerificationError) as engine:
            async with database.transaction() as session:
                await session.execute(text("SELECT 1"))
        assert re.search(reason, str(engine.value)), engine.value
    finally:
        await database.dispose()
    # The job queue's pool opens lazily and retries; its connection string is the same.
    with pytest.raises(psycopg.OperationalError) as queue:
        await psycopg.AsyncConnection.connect(conninfo(url), connect_timeout=5)
    assert re.search(reason, str(queue.value)), queue.value


async def test_verify_full_with_the_right_ca_connects_encrypted(server: TLSPostgres, files: dict[str, Path]) -> None:
    await assert_every_connection_works(server.url(sslmode="verify-full", sslrootcert=str(files["ours"])))


async def test_verify_full_refuses_a_certificate_from_another_ca(
    server: TLSPostgres, files: dict[str, Path]
) -> None:
    await assert_every_connection_refused(
        server.url(sslmode="verify-full", sslrootcert=str(files["other"])), "certificate verify failed")


async def test_verify_full_refuses_a_certificate_for_another_host(
    server: TLSPostgres, files: dict[str, Path], ca: trustme.CA
) -> None:
    server.present(ca.issue_cert("db.example.internal"))  # the right CA, the wrong name
    try:
        url = server.url(sslmode="verify-full", sslrootcert=str(files["ours"]))
        await assert_every_connection_refused(url, "mismatch|does not match host name")
        # verify-ca checks only the chain: it connects, which is why paymentd's docs say verify-full.
        database = Database(server.url(sslmode="verify-ca", sslrootcert=str(files["ours"])), pool_size=1)
        try:
            async with database.transaction() as session:
                assert (await session.execute(text(ENCRYPTED))).one()[0] is True
        finally:
            await database.dispose()
    finally:
        server.present(ca.issue_cert("127.0.0.1", "localhost"))
