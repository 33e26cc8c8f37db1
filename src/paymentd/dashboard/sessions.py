"""Dashboard sessions: a row per signed-in browser, named by a random token in its cookie.

The row keeps only the token's SHA-256, the API key it was opened with and a CSRF token
(a synchronizer token: every form carries it, every POST is checked against the row).
Each request re-reads the key, so a revoked or expired key, or one that lost the
`dashboard` scope, ends its sessions at their next request; so do `idle_s` without a
request and `max_age_s` after sign-in. Opening and ending a session are audited.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Literal

from paymentd import audit
from paymentd.audit import context as audit_context
from paymentd.auth.keys import Scope
from paymentd.auth.service import Principal
from paymentd.db import Database

EndReason = Literal["signed_out", "idle", "expired", "key_revoked"]


@dataclass(frozen=True)
class Session:
    id: uuid.UUID
    principal: Principal
    csrf_token: str

    def csrf_ok(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf_token.encode())


@dataclass(frozen=True)
class Ended:
    """No live session: why, when the cookie named one that just ended (None: it named nothing)."""

    reason: EndReason | None


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def may_sign_in(principal: Principal) -> bool:
    return principal.allows(Scope.dashboard)


def _actor(api_key_id: object) -> audit_context.Actor:
    return audit_context.Actor("api_key", str(api_key_id))


async def open_session(database: Database, principal: Principal, *, idle_s: int, max_age_s: int) -> tuple[str, Session]:
    """A new session for `principal`; returns the cookie's token (nowhere else after this)."""
    token, csrf = new_token(), new_token()
    async with database.sql_transaction() as conn:
        # Sessions nobody came back to are swept here: the table holds only live ones.
        await conn.execute(
            "DELETE FROM dashboard_sessions WHERE last_seen_at < clock_timestamp() - make_interval(secs => $1)"
            " OR created_at < clock_timestamp() - make_interval(secs => $2)", float(idle_s), float(max_age_s))
        session_id = await conn.fetchval(
            "INSERT INTO dashboard_sessions (token_hash, api_key_id, account_id, csrf_token)"
            " VALUES ($1, $2, $3, $4) RETURNING id",
            token_hash(token), principal.api_key_id, principal.account_id, csrf)
        audit.record(conn, "dashboard.signed_in", account_id=principal.account_id, object_type="dashboard_session",
                     object_id=session_id, actor=_actor(principal.api_key_id),
                     changes={"api_key_id": (None, str(principal.api_key_id))})
    return token, Session(session_id, principal, csrf)


async def resume(database: Database, token: str | None, *, idle_s: int, max_age_s: int) -> Session | Ended:
    """The live session `token` names, its last use moved to now; else why there is none."""
    if not token or len(token) > 100:
        return Ended(None)
    async with database.sql_transaction() as conn:
        row = await conn.fetchrow(
            "SELECT s.id, s.csrf_token, s.api_key_id, s.account_id, k.prefix, k.scopes, k.expires_at,"
            " a.rate_limit_rps,"
            " s.last_seen_at < clock_timestamp() - make_interval(secs => $2) AS idle,"
            " s.created_at < clock_timestamp() - make_interval(secs => $3) AS too_old,"
            " k.revoked_at IS NOT NULL OR (k.expires_at IS NOT NULL AND k.expires_at <= clock_timestamp()) AS dead"
            " FROM dashboard_sessions s JOIN api_keys k ON k.id = s.api_key_id JOIN accounts a ON a.id = s.account_id"
            " WHERE s.token_hash = $1 FOR UPDATE OF s",
            token_hash(token), float(idle_s), float(max_age_s))
        if row is None:
            return Ended(None)
        principal = Principal(account_id=row["account_id"], api_key_id=row["api_key_id"],
                              scopes=frozenset(row["scopes"]), rate_limit_rps=row["rate_limit_rps"],
                              expires_at=row["expires_at"], key_prefix=row["prefix"])
        reason: EndReason | None = None
        if row["dead"] or not may_sign_in(principal):
            reason = "key_revoked"
        elif row["idle"]:
            reason = "idle"
        elif row["too_old"]:
            reason = "expired"
        if reason is not None:
            await _end(conn, row["id"], principal, reason, actor=audit_context.SYSTEM)
            return Ended(reason)
        await conn.execute("UPDATE dashboard_sessions SET last_seen_at = clock_timestamp() WHERE id = $1", row["id"])
    return Session(row["id"], principal, row["csrf_token"])


async def close(database: Database, session: Session) -> None:
    """Sign out: the row goes, so the cookie names nothing any more."""
    async with database.sql_transaction() as conn:
        await _end(conn, session.id, session.principal, "signed_out", actor=_actor(session.principal.api_key_id))


async def _end(conn: object, session_id: uuid.UUID, principal: Principal, reason: EndReason, *,
               actor: audit_context.Actor) -> None:
    deleted = await conn.fetchval(  # type: ignore[attr-defined]
        "DELETE FROM dashboard_sessions WHERE id = $1 RETURNING id", session_id)
    if deleted is not None:  # a concurrent request may have ended it first: one entry
        audit.record(conn, "dashboard.signed_out", account_id=principal.account_id, object_type="dashboard_session",
                     object_id=session_id, actor=actor, changes={"reason": (None, reason)})
