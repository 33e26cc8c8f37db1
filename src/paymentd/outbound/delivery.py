"""Sending: one job per endpoint at a time (procrastinate lock `outbound:<endpoint>`)
sends the head of each object's queue (the pending delivery with the lowest sequence),
so a later event for an object waits until the earlier one was delivered or given up.

Each attempt: the URL checked again on fresh DNS answers and connected to the checked
address, signed (Standard Webhooks), a few seconds at most, no redirects followed.
2xx: delivered. 410: the endpoint is disabled. Anything else: retried with exponential
backoff and jitter until the retry window (about three days) closes, when it is given
up. An endpoint that fails every delivery long enough is paused, saying why.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from sqlalchemy import text

from paymentd import __version__
from paymentd.audit.context import SYSTEM
from paymentd.config import Settings
from paymentd.db import Database
from paymentd.logs import log
from paymentd.outbound import targets
from paymentd.outbound.endpoints import set_status
from paymentd.outbound.models import DISABLED, ENABLED, FAILED, PAUSED, PENDING, SUCCEEDED, OutboundEvent, \
    WebhookDelivery, WebhookEndpoint
from paymentd.outbound.runtime import Runtime
from paymentd.outbound.signing import signature_header

RESPONSE_BODY_BYTES = 256
MAX_RUN_S = 300.0  # then the job ends and the sweep starts another: no worker slot is held forever
_HEADS = text("""
    SELECT id, next_attempt_at FROM (
        SELECT DISTINCT ON (object_key) id, next_attempt_at FROM webhook_deliveries
        WHERE endpoint_id = :endpoint AND status = 'pending' ORDER BY object_key, sequence
    ) heads ORDER BY next_attempt_at LIMIT :limit
""")
_DUE_ENDPOINTS = text("""
    SELECT DISTINCT d.endpoint_id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
    WHERE d.status = 'pending' AND e.status = 'enabled' AND d.next_attempt_at <= :now
""")


@dataclass(frozen=True)
class Answer:
    status: int | None = None
    body: str | None = None
    error: str | None = None
    latency_ms: int | None = None


@dataclass(frozen=True)
class Message:
    endpoint: WebhookEndpoint
    event_id: str
    body: bytes
    secrets: list[str]


def body_of(event: OutboundEvent) -> bytes:
    """Compact, stable bytes (receivers verify the raw body, never a re-serialization)."""
    created = event.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"id": event.id, "type": event.type, "created": created, "sequence": event.sequence,
                         "data": {"object": event.payload}})


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The current secret, and the rotated-out one while its 24 h last."""
    secrets_ = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        secrets_.append(endpoint.previous_secret)
    return secrets_


def retry_delay(settings: Settings, attempts: int) -> float:
    """Exponential backoff with jitter: after the n-th failed attempt, between half
    and all of base * 2^(n-1), capped."""
    ceiling = min(settings.webhooks_retry_cap_s, settings.webhooks_retry_base_s * 2 ** min(attempts - 1, 40))
    return random.uniform(ceiling / 2, ceiling)


class Sender:
    def __init__(self, database: Database, settings: Settings, runtime: Runtime) -> None:
        self.database = database
        self.settings = settings
        self.runtime = runtime

    async def run(self, endpoint_id: uuid.UUID) -> dict[str, int]:
        """Send the endpoint's due heads until none is due within the linger time."""
        started, tally = time.monotonic(), {"succeeded": 0, "failed_attempts": 0}
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                     timeout=httpx.Timeout(self.settings.webhooks_timeout_s)) as client:
            while time.monotonic() - started < MAX_RUN_S:
                async with self.database.transaction() as session:
                    endpoint = await session.get(WebhookEndpoint, endpoint_id)
                    heads = (await session.execute(_HEADS, {"endpoint": endpoint_id, "limit": 100})).all()
                if endpoint is None or endpoint.status != ENABLED or not heads:
                    break
                now = self.runtime.clock()
                due = [head.id for head in heads if head.next_attempt_at <= now]
                if not due:
                    wait = (min(head.next_attempt_at for head in heads) - now).total_seconds()
                    if wait > self.settings.webhooks_linger_s:
                        break
                    await asyncio.sleep(wait)
                    continue
                limit = asyncio.Semaphore(self.settings.webhooks_concurrency)

                async def one(delivery_id: uuid.UUID) -> bool:
                    async with limit:
                        return await self.attempt(client, delivery_id)

                for ok in await asyncio.gather(*(one(d) for d in due)):
                    tally["succeeded" if ok else "failed_attempts"] += 1
        return tally

    async def attempt(self, client: httpx.AsyncClient, delivery_id: uuid.UUID) -> bool:
        message = await self._message(delivery_id)
        if message is None:
            return False
        answer = await self.send(client, message)
        return await self._record(delivery_id, answer)

    async def _message(self, delivery_id: uuid.UUID) -> Message | None:
        async with self.database.transaction() as session:
            delivery = await session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.status != PENDING:
                return None
            endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
            event = await session.get(OutboundEvent, delivery.event_id)
        return Message(endpoint, event.id, body_of(event), signing_secrets(endpoint, self.runtime.clock()))

    async def send(self, client: httpx.AsyncClient, message: Message) -> Answer:
        """One POST, to an address checked just now; never raises."""
        allow_private = self.settings.webhooks_private_targets_allowed
        try:
            target = targets.parse(message.endpoint.url, allow_private=allow_private)
            addresses = await targets.resolve(target, self.runtime.resolver, allow_private=allow_private)
        except targets.TargetRefused as refused:
            return Answer(error=f"refused: {refused}")
        timestamp = int(self.runtime.clock().timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": f"paymentd-webhooks/{__version__}",
            "host": target.host_header(),
            "webhook-id": message.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(message.secrets, message.event_id, timestamp, message.body),
        }
        address = addresses[0]
        host = f"[{address}]" if ":" in address else address
        url = f"{target.scheme}://{host}:{target.port}{target.path}"
        # The certificate is checked against the URL's host name, not the address.
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.webhooks_timeout_s):
                request = client.build_request("POST", url, content=message.body, headers=headers,
                                               extensions=extensions)
                response = await client.send(request, stream=True)
                try:
                    body = b""
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) >= RESPONSE_BODY_BYTES:
                            break
                finally:
                    await response.aclose()
        except TimeoutError:
            return Answer(error="timeout", latency_ms=_ms(started))
        except httpx.HTTPError as error:
            return Answer(error=f"{type(error).__name__}: {str(error)[:200]}", latency_ms=_ms(started))
        return Answer(status=response.status_code, latency_ms=_ms(started),
                      body=body[:RESPONSE_BODY_BYTES].decode("utf-8", "replace"))

    async def _record(self, delivery_id: uuid.UUID, answer: Answer) -> bool:
        """The attempt's outcome on the delivery, and on the endpoint's health."""
        now = self.runtime.clock()
        ok = answer.status is not None and 200 <= answer.status < 300
        async with self.database.transaction() as session:
            delivery = await session.get(WebhookDelivery, delivery_id, with_for_update=True)
            if delivery is None:
                return False  # the endpoint was deleted meanwhile
            endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id, with_for_update=True)
            delivery.attempts += 1
            delivery.last_attempt_at = now
            delivery.response_status, delivery.response_body = answer.status, answer.body
            delivery.error, delivery.latency_ms = answer.error, answer.latency_ms
            if ok:
                delivery.status, delivery.delivered_at = SUCCEEDED, now
                endpoint.consecutive_failures, endpoint.failing_since = 0, None
                return True
            if answer.status == 410:
                delivery.status = FAILED
                if endpoint.status != DISABLED:
                    set_status(session, endpoint, DISABLED, "the endpoint answered 410 Gone", now,
                               action="disabled", actor=SYSTEM)
                return False
            retry_at = now + timedelta(seconds=retry_delay(self.settings, delivery.attempts))
            if retry_at > delivery.window_start + timedelta(seconds=self.settings.webhooks_give_up_after_s):
                delivery.status = FAILED  # given up: the next event for the object may go
            else:
                delivery.next_attempt_at = retry_at
            endpoint.consecutive_failures += 1
            endpoint.failing_since = endpoint.failing_since or now
            failing_for = (now - endpoint.failing_since).total_seconds()
            if (endpoint.status == ENABLED
                    and endpoint.consecutive_failures >= self.settings.webhooks_pause_after_failures
                    and failing_for >= self.settings.webhooks_pause_after_s):
                reason = (f"paused by paymentd: {endpoint.consecutive_failures} deliveries in a row failed "
                          f"since {endpoint.failing_since.isoformat()}")
                set_status(session, endpoint, PAUSED, reason, now, action="paused", actor=SYSTEM)
                log.warning("outbound.endpoint_paused", endpoint_id=str(endpoint.id),
                            failures=endpoint.consecutive_failures)
        return False


async def due_endpoints(database: Database, now: datetime) -> list[uuid.UUID]:
    """Enabled endpoints with a delivery due (for the periodic sweep)."""
    async with database.transaction() as session:
        return [row[0] for row in (await session.execute(_DUE_ENDPOINTS, {"now": now})).all()]


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


__all__ = ["Answer", "Sender", "body_of", "due_endpoints", "retry_delay", "signing_secrets"]
