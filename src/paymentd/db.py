"""Async engine and sessions: one transaction per unit of work.

Services open `async with db.transaction() as session:` around each step that
must be all-or-nothing, and never hold a transaction open across a Stripe call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from paymentd.audit import entries as audit_buffers
from paymentd.audit import writer as audit_writer
from paymentd.outbound import pending as outbound_pending


T = TypeVar("T")

# Called with the audit entries of every transaction that committed (metrics.py counts
# status moves from them); registered by whoever wants them, so this module imports no one.
COMMIT_OBSERVERS: list[Callable[[Sequence[Any]], None]] = []
_AFTER_COMMIT = "paymentd.after_commit"
# Plain-SQL transactions register their connection's after-commit list here while they last.
_after_by_connection: dict[int, list[Callable[[], None]]] = {}


def after_commit(sink: object, callback: Callable[[], None]) -> None:
    """Run `callback` once `sink`'s transaction (an ORM session or a plain-SQL connection
    of `Database.transaction`/`sql_transaction`) has committed; never if it rolls back.
    A connection outside such a transaction commits each statement: at once."""
    if isinstance(sink, AsyncSession):
        sink.info.setdefault(_AFTER_COMMIT, []).append(callback)
        return
    callbacks = _after_by_connection.get(id(sink))
    if callbacks is None:
        callback()
    else:
        callbacks.append(callback)


def _committed(entries: Sequence[Any], callbacks: list[Callable[[], None]] | None) -> None:
    if entries:
        for observer in COMMIT_OBSERVERS:
            observer(entries)
    for callback in callbacks or ():
        callback()


def async_url(url: str) -> str:
    """Any postgres URL (libpq style or SQLAlchemy style) as an asyncpg one."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same database as a plain libpq URL, which asyncpg parses itself, TLS
    parameters included (sslmode, sslrootcert, sslcert, sslkey, sslcrl...), exactly
    as psycopg (libpq) reads them for Alembic and the job queue. SQLAlchemy's asyncpg
    dialect would hand them to asyncpg.connect() as unknown keyword arguments."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The same database for synchronous tools (Alembic, psycopg)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


class Database:
    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        self.url = url
        # No pre-ping: it costs a round trip per checkout; a dead connection fails
        # its transaction instead, which is rolled back and surfaces as a retryable error.
        # One event loop gains little past ~10 connections; PostgreSQL's 100-connection
        # default must cover every API process, worker and tool, so stay small.
        # hide_parameters: a failed statement's error text never carries client secrets,
        # emails or metadata into logs or stored error fields.
        # async_creator: every connection is asyncpg's own parse of the libpq URL, so
        # `?sslmode=verify-full&sslrootcert=...` means what it means to psql.
        dsn, connect_timeout = _without_connect_timeout(libpq_url(url))
        self.engine: AsyncEngine = create_async_engine(
            async_url(url), pool_size=pool_size, max_overflow=pool_size // 2, pool_timeout=10, hide_parameters=True,
            async_creator=lambda: asyncpg.connect(dsn, timeout=connect_timeout),
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.audit_heads = audit_writer.Heads()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One ORM unit of work. Audit entries recorded in it are sealed last, just
        before COMMIT (audit/writer.py); an exception leaves neither change nor entry."""
        async with self.sessions() as session:
            head = None
            entries: list = []
            try:
                async with session.begin():
                    yield session
                    if (joined := session.info.get(_JOINED_DRIVER)) is not None:
                        await outbound_pending.flush(joined)  # events emitted on the joined driver
                    if entries := audit_buffers.take_session_buffer(session):
                        await session.flush()  # the changes first: a failing flush takes no chain head
                        head = await audit_writer.seal(await driver_of(session), entries, self.audit_heads)
                if head is not None:  # committed
                    self.audit_heads.give_back(head)
            finally:
                if (joined := session.info.pop(_JOINED_DRIVER, None)) is not None:
                    audit_buffers.close_buffer(joined)
                    _after_by_connection.pop(id(joined), None)
                    outbound_pending.close_buffer(joined)
            _committed(entries, session.info.pop(_AFTER_COMMIT, None))

    @asynccontextmanager
    async def sql_transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """The same pool's connection as a bare asyncpg driver in a transaction: for
        the payment hot path (payments/sql.py), where the ORM session's own work
        cost more CPU than the statements."""
        async with self.sql_connection() as driver:
            entries = audit_buffers.open_buffer(driver)
            outbound_pending.open_buffer(driver)
            head = None
            callbacks = _after_by_connection[id(driver)] = []
            try:
                async with driver.transaction():
                    yield driver
                    await outbound_pending.flush(driver)  # events emitted on the bare connection
                    head = await audit_writer.seal(driver, entries, self.audit_heads)  # last, just before COMMIT
                if head is not None:  # committed
                    self.audit_heads.give_back(head)
            finally:
                outbound_pending.close_buffer(driver)
                audit_buffers.close_buffer(driver)
                _after_by_connection.pop(id(driver), None)
            _committed(entries, callbacks)

    @asynccontextmanager
    async def sql_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """The same, each statement its own transaction: for reads and single writes
        that need no other statement's company, without BEGIN and COMMIT round trips."""
        async with self.engine.connect() as connection:
            driver = await _driver(connection)
            try:
                yield driver
            except Exception as error:
                if not driver.is_closed():
                    raise
                # Lost (PostgreSQL restarted, the backend was killed). Through the ORM,
                # SQLAlchemy would drop it from the pool; here that is ours to do.
                await connection.invalidate()
                raise ConnectionError("the database connection was lost") from error

    async def dispose(self) -> None:
        await self.engine.dispose()


# A new connection to a primary that does not answer at all (a failover's old address) gives up
# after this long unless the URL says `connect_timeout=N` (libpq's name; psycopg reads it itself).
DEFAULT_CONNECT_TIMEOUT_S = 10.0


def _without_connect_timeout(dsn: str) -> tuple[str, float]:
    """asyncpg does not read libpq's `connect_timeout` (it would send it to the server as a
    setting): take it out of the URL and give it to asyncpg.connect as its timeout."""
    parsed = make_url(dsn)
    value = parsed.query.get("connect_timeout")
    if value is None:
        return dsn, DEFAULT_CONNECT_TIMEOUT_S
    value = value if isinstance(value, str) else value[-1]
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError("DATABASE_URL's connect_timeout must be a number of seconds") from None
    if seconds <= 0:
        seconds = DEFAULT_CONNECT_TIMEOUT_S  # libpq: 0 means "wait forever"; never here
    return parsed.difference_update_query(["connect_timeout"]).render_as_string(hide_password=False), seconds


class RowSink(Protocol):
    """Where new rows go: an ORM session, or a `payments.sql.Batch` on the hot path."""

    def add(self, instance: object) -> None: ...


async def driver_of(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a session's begun transaction, so a plain-SQL
    statement of the hot path (payments/sql.py) can join an ORM unit of work."""
    driver = await _driver(await session.connection())
    if not driver.is_in_transaction():
        raise RuntimeError("plain SQL joins a session only once its transaction has begun")
    if _JOINED_DRIVER not in session.info:
        # Audit entries recorded on the driver join the session's own (sealed at its end).
        session.info[_JOINED_DRIVER] = driver
        audit_buffers.open_buffer(driver, audit_buffers.session_buffer(session))
        _after_by_connection[id(driver)] = session.info.setdefault(_AFTER_COMMIT, [])
        outbound_pending.open_buffer(driver)
    return driver


_JOINED_DRIVER = "paymentd.db.driver"


async def _driver(connection: AsyncConnection) -> asyncpg.Connection:
    return (await connection.get_raw_connection()).driver_connection


class Base(DeclarativeBase):
    """Declarative base of every table; Alembic migrations are written by hand against it."""


def store_unavailable(error: BaseException) -> bool:
    """PostgreSQL unreachable, restarting, or out of connections: worth a retry, not a bug."""
    if isinstance(error, (sa_exc.TimeoutError, sa_exc.OperationalError, sa_exc.InterfaceError, OSError)):
        return True
    # Raised through SQLAlchemy (wrapped, sometimes twice: DBAPIError -> adapted error -> asyncpg's)
    # or straight from the driver (payments/sql.py): the whole chain is looked at.
    # OperatorInterventionError: "the database system is shutting down / starting up", a backend
    # terminated by a restart or failover. InternalClientError: asyncpg's own state after such a
    # loss ("another operation is in progress"); the transaction is gone either way.
    unavailable = (asyncpg.exceptions.PostgresConnectionError, asyncpg.exceptions.TooManyConnectionsError,
                   asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InterfaceError,
                   asyncpg.exceptions.InternalClientError, OSError)
    return any(isinstance(e, unavailable) for e in _causes(error))


def _causes(error: BaseException | None, depth: int = 6) -> Iterator[BaseException]:
    seen = 0
    while error is not None and seen < depth:
        yield error
        orig = getattr(error, "orig", None)
        if isinstance(orig, BaseException) and orig is not error:
            yield orig
        error = error.__cause__ or (orig.__cause__ if isinstance(orig, BaseException) else None)
        seen += 1


async def retry_store(step: Callable[[], Awaitable[T]], *, attempts: int = 5, delay_s: float = 0.5) -> T:
    """Background work outlives a brief database overload: a step that is its own
    transaction (all or nothing) is run again when it failed only because the store
    was unavailable, instead of leaving its record for the reconciler."""
    for attempt in range(attempts):
        try:
            return await step()
        except Exception as error:
            if attempt == attempts - 1 or not store_unavailable(error):
                raise
            await asyncio.sleep(delay_s * 2**attempt)
    raise AssertionError("unreachable")
