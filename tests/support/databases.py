"""A fresh, migrated PostgreSQL database per test session (or xdist worker).

Uses the server at PAYMENTD_TEST_DATABASE_URL (default: the local one on
127.0.0.1:5432); when none answers, the embedded server, as paymentd does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from paymentd.embedded import EmbeddedPostgres
from paymentd.migrate import upgrade

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def admin_url(tmp_root: Path) -> Iterator[str]:
    url = os.environ.get("PAYMENTD_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    try:
        psycopg.connect(url, connect_timeout=3).close()
        yield url
    except psycopg.OperationalError:
        embedded = EmbeddedPostgres(tmp_root)
        try:
            yield embedded.start()
        finally:
            embedded.stop()


@contextmanager
def fresh_database(admin: str) -> Iterator[str]:
    name = f"paymentd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
