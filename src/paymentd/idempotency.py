"""Idempotency-Key: claim atomically in PostgreSQL before any side effect, replay after.

Same key, endpoint and body: the stored response again (`Idempotent-Replayed: true`).
Other endpoint or body: 422. Still running: 409. A request that died half way
(its lease ran out) or failed transiently (5xx, 429) is re-run under the same
seed, so it recreates the same ids and sends Stripe the same keys: never twice.
Authentication and authorization come first (auth/middleware.py, then the route's
scope check): an answer is stored with the scopes its route checked, and replayed only
to a key that holds them; answers that say nothing about the work (401, 403, 429, 5xx)
are never stored, and a claim refused before any work (401, 403) is forgotten.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paymentd import crypto
from paymentd.auth import keys
from paymentd.db import Database, retry_store, store_unavailable
from paymentd.errors import IdempotencyError, InvalidRequest, PaymentdError, PermissionDenied
from paymentd.http import replay_body, send_error
from paymentd.logs import log

_KEY_RE = re.compile(r"^[\x20-\x7e]{1,255}$")
# Headers a replay must not repeat: each response gets its own request id and length.
_NOT_REPLAYED = {b"x-request-id", b"content-length", b"date", b"server"}
# Answers about the caller, not the work: never stored, never replayed.
_ABOUT_THE_CALLER = {401, 403, 429}


@dataclass(frozen=True)
class Claim:
    seed: uuid.UUID
    replay: tuple[int, list[tuple[bytes, bytes]], bytes] | None = None
    fresh: bool = False  # claimed by this request: no earlier attempt ran under its seed
    required_scopes: tuple[str, ...] = ()  # what a key needs to be shown `replay`


def request_hash(method: str, path: str, body: bytes) -> str:
    """Bodies equal as JSON hash alike, whatever their spacing or key order."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


class IdempotencyStore:
    def __init__(self, database: Database, *, lease: timedelta) -> None:
        self.database = database
        self.lease = lease

    # Plain SQL on the driver: two of these run around every keyed POST, and
    # through the ORM session they cost more CPU than the statements themselves.
    async def claim(self, account_id: uuid.UUID, key: str, fingerprint: str) -> Claim:
        async with self.database.sql_connection() as conn:
            # A new key (the usual case) is claimed by this one atomic statement.
            seed = await conn.fetchval(
                "INSERT INTO idempotency_keys (account_id, key, request_hash, locked_until) "
                "VALUES ($1, $2, $3, clock_timestamp() + $4::interval) ON CONFLICT DO NOTHING RETURNING seed",
                account_id, key, fingerprint, self.lease,
            )
            if seed is not None:
                return Claim(seed, fresh=True)
            async with conn.transaction():
                return await self._reclaim(conn, account_id, key, fingerprint)

    async def _reclaim(self, conn: asyncpg.Connection, account_id: uuid.UUID, key: str, fingerprint: str) -> Claim:
        """A key used before: its answer to replay, a refusal, or the same seed to run again."""
        row = await conn.fetchrow(
            "SELECT request_hash, seed, state, locked_until > clock_timestamp() AS live, "
            "response_status, response_headers, response_body, required_scopes FROM idempotency_keys "
            "WHERE account_id = $1 AND key = $2 FOR UPDATE",
            account_id, key,
        )
        if row["request_hash"] != fingerprint:
            raise IdempotencyError(
                "This Idempotency-Key was used with another endpoint or body.", param="Idempotency-Key"
            )
        if row["state"] == "done":
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in row["response_headers"]]
            body = crypto.keyring().decrypt_bytes(row["response_body"], **_sealed_where(account_id, key))
            return Claim(row["seed"], (row["response_status"], headers, body),
                         required_scopes=tuple(row["required_scopes"] or ()))
        if row["state"] == "in_flight" and row["live"]:
            raise IdempotencyError(
                "A request with this Idempotency-Key is still in progress; retry shortly.",
                status=409,
                param="Idempotency-Key",
            )
        # Retryable, or in flight past its lease (the process died): run again, same seed.
        await conn.execute(
            "UPDATE idempotency_keys SET state = 'in_flight', locked_until = clock_timestamp() + $3::interval "
            "WHERE account_id = $1 AND key = $2",
            account_id, key, self.lease,
        )
        return Claim(row["seed"])

    async def finish(
        self, account_id: uuid.UUID, key: str, status: int | None, headers: list[tuple[bytes, bytes]], body: bytes,
        *, required_scopes: list[str] | tuple[str, ...] = (),
    ) -> None:
        """Keep the answer; but a transient failure (5xx, 429), an answer about the
        caller (401, 403) or a crash is not one to replay: the key stays usable for a retry."""
        final = status is not None and status < 500 and status not in _ABOUT_THE_CALLER
        stored = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k.lower() not in _NOT_REPLAYED]
        async with self.database.sql_connection() as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET state = $3, locked_until = NULL, response_status = $4, "
                "response_headers = $5::jsonb, response_body = $6, required_scopes = $7 "
                "WHERE account_id = $1 AND key = $2",
                account_id, key, "done" if final else "retryable", status if final else None,
                json.dumps(stored) if final else None,
                # Sealed: a stored payment or user carries emails, names and metadata.
                crypto.keyring().encrypt_bytes(body, **_sealed_where(account_id, key)) if final else None,
                sorted(required_scopes) if final else None,
            )

    async def release(self, account_id: uuid.UUID, key: str) -> None:
        """Forget a claim under which nothing ran (refused before the work): the key is
        as if never used, so the caller may use it with any request."""
        async with self.database.sql_connection() as conn:
            await conn.execute("DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2", account_id, key)


def _sealed_where(account_id: uuid.UUID, key: str) -> dict[str, str]:
    return {"table": "idempotency_keys", "column": "response_body", "row_id": f"{account_id}/{key}"}


_pending: set[asyncio.Task] = set()


def _later(work) -> None:  # type: ignore[no-untyped-def]
    """Run `work` beside the request; its failure is only logged (the lease still expires)."""
    task = asyncio.create_task(work)
    _pending.add(task)

    def done(finished: asyncio.Task) -> None:
        _pending.discard(finished)
        if not finished.cancelled() and finished.exception() is not None:
            log.warning("idempotency.finish_gave_up", error_type=type(finished.exception()).__name__)

    task.add_done_callback(done)


class IdempotencyMiddleware:
    """Wraps every POST under /api that carries an Idempotency-Key."""

    def __init__(self, app: ASGIApp, *, store_factory) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.store_factory = store_factory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _header(scope, b"idempotency-key")
        if scope["type"] != "http" or scope["method"] != "POST" or key is None or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        request_id = scope["state"]["request_id"]
        store: IdempotencyStore = self.store_factory(scope)
        try:
            if not _KEY_RE.match(key):
                raise InvalidRequest(
                    "Idempotency-Key must be 1 to 255 printable ASCII characters.",
                    code="idempotency_key_invalid",
                    param="Idempotency-Key",
                )
            principal = scope["state"].get("principal") or await self._principal(scope)
            if principal is None:  # the route answers 401 itself
                await self.app(scope, receive, send)
                return
            body = await _read(receive)
            claim = await store.claim(principal.account_id, key, request_hash("POST", scope["path"], body))
            if claim.replay is not None:
                # A key that may not make this request may not see its answer either
                # (a stored refund replayed to a key without refunds:write).
                for needed in claim.required_scopes:
                    if needed not in principal.scopes and keys.Scope.admin.value not in principal.scopes:
                        raise PermissionDenied(f"This API key lacks the `{needed}` scope.", code="missing_scope")
        except PaymentdError as error:
            await send_error(send, error, request_id)
            return
        if claim.replay is not None:
            status, headers, stored_body = claim.replay
            await send({"type": "http.response.start", "status": status,
                        "headers": [*headers, (b"idempotent-replayed", b"true"),
                                    (b"content-length", str(len(stored_body)).encode())]})
            await send({"type": "http.response.body", "body": stored_body})
            return

        scope["state"]["idempotency_seed"] = claim.seed
        captured: dict = {"status": None, "headers": [], "body": bytearray(), "finished": False}

        async def record() -> None:
            if captured["status"] in (401, 403) and claim.fresh:
                await store.release(principal.account_id, key)
                return
            await store.finish(
                principal.account_id, key, captured["status"], captured["headers"], bytes(captured["body"]),
                required_scopes=sorted(scope["state"].get("checked_scopes", ())),
            )

        async def finish() -> None:
            if captured["finished"]:
                return
            captured["finished"] = True
            try:
                await record()
            except Exception as error:  # noqa: BLE001 - the lease expiring makes the key retryable anyway
                log.exception("idempotency.finish_failed")
                if store_unavailable(error):
                    # PostgreSQL is away (restart, failover): record the outcome once it is back,
                    # so the caller's retry is answered then, not after the whole lease.
                    _later(retry_store(record, attempts=8, delay_s=0.5))

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
                if not message.get("more_body", False):
                    # Stored before the caller sees it: a retry sent the instant the
                    # answer arrives must find it, not "still in flight".
                    await finish()
            await send(message)

        try:
            await self.app(scope, replay_body(body, receive), capture)
        finally:
            await finish()  # no answer (the app crashed): the key becomes retryable

    @staticmethod
    async def _principal(scope: Scope):  # type: ignore[no-untyped-def]
        authorization = _header(scope, b"authorization") or ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        principal = await scope["app"].state.authenticator(token.strip())
        # The route's auth dependency reuses it rather than asking again.
        scope["state"]["principal"] = principal
        return principal


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)
