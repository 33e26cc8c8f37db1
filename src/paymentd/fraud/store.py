"""Rule sets and decisions in PostgreSQL (plain SQL: both are on the payment path).

Every version of a rule set is kept; the newest is the account's. An account that
never saved one runs the defaults as version 0. Decisions keep the inputs the rules
saw, sealed by the keyring (crypto/fields.py), so a decision can be explained later.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from paymentd import audit, crypto
from paymentd.crypto.fields import of_table
from paymentd.errors import Conflict
from paymentd.fraud import defaults, rules

_INPUTS = next(f for f in of_table("fraud_decisions") if f.column == "inputs")
_CACHE_SIZE = 1024
# Parsed rule sets by (account, version): a version never changes once saved.
_compiled: dict[tuple[uuid.UUID, int], rules.RuleSet] = {}


@functools.cache
def defaults_set() -> rules.RuleSet:
    """Version 0, the same for every account (parsed once per process)."""
    return rules.parse(defaults.body(), 0)


async def current(conn: asyncpg.Connection, account_id: uuid.UUID) -> rules.RuleSet:
    """The account's rule set as of now (its defaults when it never saved one)."""
    row = await conn.fetchrow(
        "SELECT version FROM fraud_rule_sets WHERE account_id = $1 ORDER BY version DESC LIMIT 1", account_id)
    version = row["version"] if row is not None else 0
    if (found := _compiled.get((account_id, version))) is not None:
        return found
    if version == 0:
        return defaults_set()
    body = await conn.fetchval(
        "SELECT body::text FROM fraud_rule_sets WHERE account_id = $1 AND version = $2", account_id, version)
    parsed = rules.parse(_json(body), version)
    if len(_compiled) >= _CACHE_SIZE:
        _compiled.clear()
    _compiled[(account_id, version)] = parsed
    return parsed


async def save(conn: asyncpg.Connection, account_id: uuid.UUID, body: Mapping[str, Any],
               replaces: int | None, actor: audit.Actor) -> rules.RuleSet:
    """A new version (RuleSetInvalid before anything is written). `replaces`, when given,
    must be the current version: a lost update is a 409, never a silent overwrite."""
    # Serializes writers of one account (two PUTs at once would both read the same version).
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('fraud_rules:' || $1::uuid::text, 0))", account_id)
    before = await current(conn, account_id)
    if replaces is not None and replaces != before.version:
        raise Conflict(f"The rule set is at version {before.version}, not {replaces}: read it again and "
                       "apply your change to it.", code="rule_set_version_mismatch", param="version")
    parsed = rules.parse(body, before.version + 1)
    stored = {key: value for key, value in parsed.as_json().items() if key != "version"}
    await conn.execute("INSERT INTO fraud_rule_sets (account_id, version, body) VALUES ($1, $2, $3::jsonb)",
                       account_id, parsed.version, json.dumps(stored))
    audit.record(conn, "fraud_rules.updated", account_id=account_id, object_type="fraud_rules",
                 object_id=account_id, actor=actor,
                 changes={"version": (before.version, parsed.version),
                          "rules": ([r.id for r in before.rules], [r.id for r in parsed.rules])})
    _compiled[(account_id, parsed.version)] = parsed
    return parsed


@dataclass
class Decision:
    """One stage's decision on a payment, as stored."""

    account_id: uuid.UUID
    payment_id: uuid.UUID
    stage: str
    rule_set_version: int
    action: str
    fired: list[str]
    inputs: dict[str, Any]
    attempt: int | None = None
    keys: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    id: uuid.UUID = field(default_factory=uuid.uuid4)


async def insert(conn: asyncpg.Connection, decision: Decision, actor: audit.Actor) -> None:
    """The decision, and its audit entry when it blocks or reviews (same transaction)."""
    sealed = _INPUTS.seal(crypto.keyring(), _plain(decision.inputs), str(decision.id))
    await conn.execute(
        "INSERT INTO fraud_decisions (id, account_id, payment_id, attempt, stage, rule_set_version, fired,"
        " action, inputs, keys, errors) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb, $11::jsonb)",
        decision.id, decision.account_id, decision.payment_id, decision.attempt, decision.stage,
        decision.rule_set_version, decision.fired, decision.action, json.dumps(sealed), json.dumps(decision.keys),
        json.dumps(decision.errors) if decision.errors else None,
    )
    if decision.action in ("block", "review"):
        audit.record(conn, f"fraud.{'blocked' if decision.action == 'block' else 'review'}",
                     account_id=decision.account_id, object_type="payment", object_id=decision.payment_id,
                     actor=actor, outcome="denied" if decision.action == "block" else "success",
                     changes={"fraud_decision": (None, str(decision.id)), "stage": (None, decision.stage),
                              "rule_set_version": (None, decision.rule_set_version),
                              "rules": (None, decision.fired)})


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-ready inputs (numbers as strings: exact, as the rules saw them; lists left out)."""
    return {key: (str(value) if not isinstance(value, bool | str) else value)
            for key, value in values.items() if not isinstance(value, set)}


async def settle(conn: asyncpg.Connection, payment_id: uuid.UUID, outcome: str) -> Decision | None:
    """Mark the payment's confirm decision still waiting for its outcome as settled
    (once: a second report of the same outcome finds none) and return its keys."""
    row = await conn.fetchrow(
        "UPDATE fraud_decisions SET outcome = $2 WHERE id = (SELECT id FROM fraud_decisions"
        " WHERE payment_id = $1 AND stage = 'confirm' AND outcome IS NULL AND action <> 'block'"
        " ORDER BY created_at DESC LIMIT 1 FOR UPDATE) RETURNING account_id, keys::text, rule_set_version, attempt",
        payment_id, outcome)
    if row is None:
        return None
    return Decision(row["account_id"], payment_id, "confirm", row["rule_set_version"], "", [], {},
                    attempt=row["attempt"], keys=_json(row["keys"]))


async def action_of(conn: asyncpg.Connection, payment_id: uuid.UUID, attempt: int) -> str | None:
    """What the confirm decision on this attempt was, if one was made."""
    return await conn.fetchval("SELECT action FROM fraud_decisions WHERE payment_id = $1 AND stage = 'confirm'"
                               " AND attempt = $2 ORDER BY created_at DESC LIMIT 1", payment_id, attempt)


async def of_payment(conn: asyncpg.Connection, payment_id: uuid.UUID) -> Sequence[dict[str, Any]]:
    """A payment's decisions, oldest first, inputs opened (for explaining them)."""
    ring = crypto.keyring()
    rows = await conn.fetch(
        "SELECT id, stage, attempt, rule_set_version, fired, action, inputs::text, errors::text, outcome, created_at"
        " FROM fraud_decisions WHERE payment_id = $1 ORDER BY created_at, id", payment_id)
    return [{**dict(row), "fired": list(row["fired"]), "errors": _json(row["errors"]) if row["errors"] else None,
             "inputs": _INPUTS.open(ring, _json(row["inputs"]), str(row["id"]))} for row in rows]


def _json(value: str | None) -> Any:
    """A JSONB value read as text (`::text`: the same on a bare driver and on the ORM's, which decodes JSON)."""
    return json.loads(value) if value is not None else None
