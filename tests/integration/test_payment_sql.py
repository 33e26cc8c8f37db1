"""payments/sql.py, the hot path's plain SQL: rows round-trip exactly as the ORM
writes and reads them, defaults come from the table, and scoping holds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import select

from paymentd.db import Database, driver_of, store_unavailable
from paymentd.payments import repository, sql
from paymentd.payments.models import Payment, PaymentAttempt, PaymentEvent
from paymentd.users.models import User


async def _user(database: Database, merchant) -> uuid.UUID:  # type: ignore[no-untyped-def]
    async with database.transaction() as session:
        user = User(account_id=merchant.account_id, email="sql@example.com", name="Sql")
        session.add(user)
        await session.flush()
        return user.id


def _payment(account_id: uuid.UUID, user_id: uuid.UUID) -> Payment:
    now = datetime.now(UTC)
    return Payment(
        id=uuid.uuid4(), account_id=account_id, user_id=user_id, amount=1999, currency="usd",
        status="requires_payment_method", payment_method_types=["card", "sepa_debit"], capture_method="manual",
        metadata_={"order": "A-1", "nested": {"n": 1}}, amount_capturable=0, amount_received=0,
        amount_refunded=0, attempt_count=0, created_at=now, updated_at=now,
    )


async def test_a_payment_written_in_sql_reads_the_same_through_the_orm(database: Database, merchant) -> None:  # type: ignore[no-untyped-def]
    payment = _payment(merchant.account_id, await _user(database, merchant))
    async with database.sql_transaction() as conn:
        await sql.insert(conn, [payment, PaymentEvent(payment_id=payment.id, to_status=payment.status, source="api")])

    async with database.transaction() as session:
        stored = await repository.get(session, merchant.account_id, payment.id)
        events = (await session.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == payment.id)
                                         .order_by(PaymentEvent.id))).all()
    assert (stored.metadata_, stored.payment_method_types, stored.amount) == (payment.metadata_, ["card", "sepa_debit"], 1999)
    assert stored.next_action is None and stored.description is None
    assert [(e.from_status, e.to_status, e.source) for e in events] == [(None, "requires_payment_method", "api")]
    assert events[0].created_at is not None  # the table's default, the column being left out

    async with database.sql_transaction() as conn:
        read = await sql.payment(conn, payment.id, account_id=merchant.account_id)
    assert read.metadata_ == payment.metadata_ and read.created_at == stored.created_at


async def test_save_rewrites_the_row_and_adds_the_batch(database: Database, merchant) -> None:  # type: ignore[no-untyped-def]
    payment = _payment(merchant.account_id, await _user(database, merchant))
    async with database.sql_transaction() as conn:
        await sql.insert(conn, [payment])
    async with database.sql_transaction() as conn:
        row = await sql.payment(conn, payment.id, lock=True)
        row.status, row.last_payment_error, row.metadata_ = "canceled", {"code": "x"}, {}
        batch = sql.Batch()
        batch.add(PaymentEvent(payment_id=row.id, from_status="requires_payment_method", to_status="canceled",
                               source="reconciler"))
        await sql.save(conn, row, batch)
    async with database.transaction() as session:
        stored = await repository.get_by_id(session, payment.id)
        events = (await session.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == payment.id)
                                         .order_by(PaymentEvent.id))).all()
    assert (stored.status, stored.last_payment_error, stored.metadata_) == ("canceled", {"code": "x"}, {})
    assert [e.to_status for e in events] == ["canceled"]


async def test_another_accounts_payment_is_absent(database: Database, merchant) -> None:  # type: ignore[no-untyped-def]
    payment = _payment(merchant.account_id, await _user(database, merchant))
    async with database.sql_transaction() as conn:
        await sql.insert(conn, [payment])
        assert await sql.payment(conn, payment.id, account_id=uuid.uuid4()) is None
        assert await sql.payment(conn, uuid.uuid4()) is None


async def test_open_attempts_close_keeping_earlier_errors(database: Database, merchant) -> None:  # type: ignore[no-untyped-def]
    payment = _payment(merchant.account_id, await _user(database, merchant))
    async with database.sql_transaction() as conn:
        await sql.insert(conn, [payment, PaymentAttempt(payment_id=payment.id, number=1, payment_method="pm_x",
                                                         outcome="unknown", error_code="timeout")])
        assert (await sql.open_attempt(conn, payment.id)).number == 1
        await sql.close_open_attempts(conn, payment.id, outcome="succeeded")
        assert await sql.open_attempt(conn, payment.id) is None
    async with database.transaction() as session:
        attempt = await repository.attempt(session, payment.id, 1)
    assert (attempt.outcome, attempt.error_code, attempt.finished_at is not None) == ("succeeded", "timeout", True)


async def test_a_failed_statement_rolls_the_whole_transaction_back(database: Database, merchant) -> None:  # type: ignore[no-untyped-def]
    payment = _payment(merchant.account_id, await _user(database, merchant))
    with pytest.raises(asyncpg.UniqueViolationError):
        async with database.sql_transaction() as conn:
            await sql.insert(conn, [payment, PaymentAttempt(payment_id=payment.id, number=1)])
            await sql.insert(conn, [PaymentAttempt(payment_id=payment.id, number=1)])
    async with database.sql_transaction() as conn:
        assert await sql.payment(conn, payment.id) is None


async def test_plain_sql_joins_a_session_only_inside_its_transaction(database: Database) -> None:
    async with database.transaction() as session:
        with pytest.raises(RuntimeError):
            await driver_of(session)
        await session.execute(select(Payment.id).limit(1))
        assert (await driver_of(session)).is_in_transaction()


def test_driver_errors_count_as_the_store_being_unavailable_or_not() -> None:
    assert store_unavailable(asyncpg.exceptions.TooManyConnectionsError("too many"))
    assert store_unavailable(asyncpg.exceptions.ConnectionDoesNotExistError("gone"))
    assert not store_unavailable(asyncpg.UniqueViolationError("duplicate key"))


async def test_a_connection_lost_under_plain_sql_is_not_handed_out_again(database_url: str) -> None:
    database = Database(database_url, pool_size=1)  # one connection: the next checkout gets the same one
    try:
        async with database.sql_transaction() as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
        killer = await asyncpg.connect(database_url)
        try:
            await killer.execute("SELECT pg_terminate_backend($1)", backend)
        finally:
            await killer.close()
        with pytest.raises(Exception) as lost:  # the pool could not know yet
            async with database.sql_transaction() as conn:
                await conn.fetchval("SELECT 1")
        assert store_unavailable(lost.value)  # a retryable 503, not a 500
        async with database.sql_transaction() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != backend
    finally:
        await database.dispose()
