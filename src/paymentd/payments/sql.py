"""The payment hot path in plain SQL on the asyncpg driver.

Every payment is created, confirmed, has Stripe's answer recorded (from our call or
a webhook) and is read back (GET); through the ORM session those statements cost
three to four times the CPU of the same SQL on the driver, about half of paymentd's
CPU per payment (bench/results/cpu-per-payment-*.md and its git history). Rows still come
back as the ORM classes, unattached, so states, sync and the presenters read them
as ever; everything else keeps the ORM session. Sealed columns (crypto/fields.py) are
opened as rows are loaded and sealed as they are written, here at the boundary.
"""

from __future__ import annotations

import json
import uuid
from functools import partial
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import inspect as orm_inspect
from sqlalchemy.dialects.postgresql import JSONB

from paymentd.audit.entries import Pending, buffer_of
from paymentd import crypto, metrics
from paymentd.db import after_commit
from paymentd.crypto.fields import comparable, of_table
from paymentd.crypto.orm import LOADED
from paymentd.payments.models import Payment, PaymentAttempt, PaymentEvent
from paymentd.payments.repository import OPEN_OUTCOMES

T = TypeVar("T")


class _Shape:
    """How one ORM class maps to its table: column names, attribute keys, JSON columns."""

    def __init__(self, cls: type) -> None:
        table = cls.__table__  # type: ignore[attr-defined]
        self.cls = cls
        self.table = table.name
        self.key = {prop.columns[0].name: prop.key for prop in orm_inspect(cls).column_attrs}
        self.json = {column.name for column in table.columns if isinstance(column.type, JSONB)}
        self.primary = [column.name for column in table.primary_key.columns]
        self.columns = ", ".join(f'"{name}"' for name in self.key)
        self._inserts: dict[tuple[str, ...], str] = {}
        self.sealed = {field.column: field for field in of_table(self.table)}

    def load(self, row: asyncpg.Record) -> Any:
        values = {self.key[name]: value for name, value in row.items()}
        if self.sealed:
            ring, loaded = crypto.keyring(), {}
            for column, field in self.sealed.items():
                if (attr := self.key[column]) in values:
                    stored = values[attr]
                    values[attr] = field.open(ring, stored, field.row_id(lambda n: row[n]))
                    loaded[column] = (comparable(field.kind, values[attr]), stored)
            obj = self.cls(**values)
            obj.__dict__[LOADED] = loaded
            return obj
        return self.cls(**values)

    def value(self, obj: object, column: str) -> Any:
        value = getattr(obj, self.key[column])
        if (field := self.sealed.get(column)) is not None and value is not None:
            value = self._sealed(obj, field, value)
        return json.dumps(value) if column in self.json and value is not None else value

    def _sealed(self, obj: object, field: Any, value: Any) -> Any:
        """The stored form: as loaded when unchanged and under the primary key (every
        save rewrites the row: no new ciphertext per save), else sealed afresh."""
        ring = crypto.keyring()
        loaded = obj.__dict__.get(LOADED, {}).get(field.column)
        if loaded is not None and loaded[0] == comparable(field.kind, value) and ring.is_current(loaded[1]):
            return loaded[1]
        return field.seal(ring, value, field.row_id(lambda n: getattr(obj, self.key[n])))

    def insert(self, obj: object) -> tuple[str, list[Any]]:
        """An INSERT of the columns set on `obj`; unset ones take the table's defaults."""
        columns = tuple(name for name in self.key if getattr(obj, self.key[name]) is not None)
        if (statement := self._inserts.get(columns)) is None:
            placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
            names = ", ".join(f'"{name}"' for name in columns)
            statement = self._inserts[columns] = f"INSERT INTO {self.table} ({names}) VALUES ({placeholders})"
        return statement, [self.value(obj, name) for name in columns]


_SHAPES = {cls: _Shape(cls) for cls in (Payment, PaymentAttempt, PaymentEvent)}
_PAYMENT = _SHAPES[Payment]
# Everything but the key, rewritten from values read under the row's lock: one
# statement for every change the hot path makes, and no update can be lost.
_SAVED = [name for name in _PAYMENT.key if name not in _PAYMENT.primary]
_SAVE_PAYMENT = "UPDATE payments SET {} WHERE id = $1".format(
    ", ".join(f'"{name}" = ${i}' for i, name in enumerate(_SAVED, start=2))
)
_BY_ID = f"SELECT {_PAYMENT.columns} FROM payments WHERE id = $1"
_BY_ACCOUNT_AND_ID = f"{_BY_ID} AND account_id = $2"
_BY_INTENT = f"SELECT {_PAYMENT.columns} FROM payments WHERE stripe_payment_intent_id = $1"


class Batch:
    """New rows to write with the payment: what `sync.move` and its hooks add."""

    def __init__(self) -> None:
        self.rows: list[object] = []
        self.audit: list[Pending] = []  # audit entries, sealed with the transaction that saves the batch

    def add(self, row: object) -> None:
        self.rows.append(row)


async def payment(
    conn: asyncpg.Connection, payment_id: uuid.UUID, *, account_id: uuid.UUID | None = None, lock: bool = False
) -> Payment | None:
    """The payment, scoped to `account_id` when given (another account's is absent)."""
    query = _BY_ACCOUNT_AND_ID if account_id is not None else _BY_ID
    args = (payment_id, account_id) if account_id is not None else (payment_id,)
    row = await conn.fetchrow(query + " FOR UPDATE" if lock else query, *args)
    return _PAYMENT.load(row) if row is not None else None


async def payment_by_intent(conn: asyncpg.Connection, intent_id: str, *, lock: bool = False) -> Payment | None:
    """The payment a PaymentIntent belongs to (for Stripe's reports about it)."""
    row = await conn.fetchrow(_BY_INTENT + " FOR UPDATE" if lock else _BY_INTENT, intent_id)
    return _PAYMENT.load(row) if row is not None else None


def fields(payment: Payment) -> dict[str, Any]:
    """The payment's column values, by attribute."""
    return {key: getattr(payment, key) for key in _PAYMENT.key.values()}


async def of_payment(conn: asyncpg.Connection, cls: type[T], payment_id: uuid.UUID, *, order: str) -> list[T]:
    """A payment's rows in another table (its events, refunds, disputes), in `order`."""
    shape = _shape(cls)
    query = f"SELECT {shape.columns} FROM {shape.table} WHERE payment_id = $1 ORDER BY {order}"
    return [shape.load(row) for row in await conn.fetch(query, payment_id)]


async def insert(conn: asyncpg.Connection, rows: Iterable[object]) -> None:
    for row in rows:
        statement, args = _shape(type(row)).insert(row)
        await conn.execute(statement, *args)


async def save(conn: asyncpg.Connection, payment: Payment, batch: Batch | None = None) -> None:
    """The payment row as it now stands (its lock is held), and the rows added for it."""
    await conn.execute(_SAVE_PAYMENT, payment.id, *(_PAYMENT.value(payment, name) for name in _SAVED))
    if batch is not None:
        await insert(conn, batch.rows)
        if batch.audit:
            buffer_of(conn).extend(batch.audit)


@dataclass(frozen=True)
class OpenAttempt:
    number: int
    payment_method: str | None
    request_seed: uuid.UUID | None


async def open_attempt(conn: asyncpg.Connection, payment_id: uuid.UUID) -> OpenAttempt | None:
    """The attempt whose outcome Stripe has not told us yet (in flight, or unknown after a failure)."""
    row = await conn.fetchrow(
        "SELECT number, payment_method, request_seed FROM payment_attempts"
        " WHERE payment_id = $1 AND outcome = ANY($2::text[])",
        payment_id, OPEN_OUTCOMES,
    )
    return OpenAttempt(row["number"], row["payment_method"], row["request_seed"]) if row is not None else None


async def close_open_attempts(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    *,
    outcome: str,
    error_code: str | None = None,
    decline_code: str | None = None,
    error_message: str | None = None,
    risk_level: str | None = None,
    risk_score: int | None = None,
    risk_outcome: str | None = None,
    risk_reason: str | None = None,
) -> None:
    """Every open attempt takes `outcome`, and the error and Radar's verdict where given, in one statement."""
    status = await conn.execute(
        "UPDATE payment_attempts SET outcome = $2, finished_at = clock_timestamp(),"
        " error_code = COALESCE($3, error_code), decline_code = COALESCE($4, decline_code),"
        " error_message = COALESCE($5, error_message), risk_level = COALESCE($7, risk_level),"
        " risk_score = COALESCE($8, risk_score), risk_outcome = COALESCE($9, risk_outcome),"
        " risk_reason = COALESCE($10, risk_reason)"
        " WHERE payment_id = $1 AND outcome = ANY($6::text[])",
        payment_id, outcome, error_code, decline_code, error_message, OPEN_OUTCOMES,
        risk_level, risk_score, risk_outcome, risk_reason,
    )
    if outcome == "failed" and (closed := int(status.rsplit(" ", 1)[-1])):
        # A decline learnt from Stripe's report (webhook, reconciler, our own call's answer).
        after_commit(conn, partial(metrics.declined, decline_code or error_code, closed))


def _shape(cls: type) -> _Shape:
    if (shape := _SHAPES.get(cls)) is None:
        shape = _SHAPES[cls] = _Shape(cls)  # e.g. a receipt email a hook added, a payment's refunds
    return shape
