"""The merchant's webhook endpoints: register (URL checked, secret shown once), list,
pause and resume, rotate the secret, delete; the delivery log and redelivery. Every
change is audited in its own transaction."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd import audit
from paymentd.config import Settings
from paymentd.db import Database
from paymentd.errors import Conflict, InvalidRequest, NotFound
from paymentd.outbound import targets
from paymentd.outbound.models import DISABLED, ENABLED, PAUSED, PENDING, OutboundEvent, WebhookDelivery, WebhookEndpoint
from paymentd.outbound.runtime import Runtime
from paymentd.outbound.schemas import EndpointCreate
from paymentd.outbound.signing import new_secret
from paymentd.outbound.types import EVENT_TYPES

ROTATION_OVERLAP = timedelta(hours=24)
NOTIFY = "SELECT pg_notify('paymentd_outbound', :endpoint)"


class Endpoints:
    def __init__(self, database: Database, settings: Settings, runtime: Runtime) -> None:
        self.database = database
        self.settings = settings
        self.runtime = runtime

    async def create(self, account_id: uuid.UUID, data: EndpointCreate) -> tuple[WebhookEndpoint, str]:
        events = _checked_events(data.events)
        await _checked_url(data.url, self.settings, self.runtime)
        secret, now = new_secret(), self.runtime.clock()
        async with self.database.transaction() as session:
            row = WebhookEndpoint(id=uuid.uuid4(), account_id=account_id, url=data.url, events=events,
                                  description=data.description, status=ENABLED, secret=secret,
                                  consecutive_failures=0, created_at=now, updated_at=now)
            session.add(row)
            audit.record(session, "webhook_endpoint.created", account_id=account_id, object_type="webhook_endpoint",
                         object_id=row.id, changes={"url": (None, row.url), "events": (None, events),
                                                    "description": (None, row.description),
                                                    "status": (None, ENABLED)})
        return row, secret

    async def list(self, account_id: uuid.UUID) -> list[WebhookEndpoint]:
        async with self.database.transaction() as session:
            rows = await session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.account_id == account_id)
                                         .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id))
            return list(rows.all())

    async def get(self, account_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
        async with self.database.transaction() as session:
            return await _owned(session, account_id, endpoint_id)

    async def delete(self, account_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
        async with self.database.transaction() as session:
            row = await _owned(session, account_id, endpoint_id, lock=True)
            await session.delete(row)  # its deliveries go with it (ON DELETE CASCADE)
            audit.record(session, "webhook_endpoint.deleted", account_id=account_id, object_type="webhook_endpoint",
                         object_id=row.id, changes={"url": (row.url, None), "status": (row.status, None)})
        return row

    async def pause(self, account_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
        async with self.database.transaction() as session:
            row = await _owned(session, account_id, endpoint_id, lock=True)
            if row.status == DISABLED:
                raise Conflict("The endpoint is disabled: resume it first.", code="invalid_state")
            if row.status == ENABLED:
                set_status(session, row, PAUSED, "paused by the merchant", self.runtime.clock(), action="paused")
            return row

    async def resume(self, account_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
        """Enabled again (from paused or disabled); held deliveries go out, in order."""
        async with self.database.transaction() as session:
            row = await _owned(session, account_id, endpoint_id, lock=True)
            if row.status != ENABLED:
                row.consecutive_failures, row.failing_since = 0, None
                set_status(session, row, ENABLED, None, self.runtime.clock(), action="resumed")
                await session.execute(text(NOTIFY), {"endpoint": str(row.id)})
            return row

    async def rotate_secret(self, account_id: uuid.UUID, endpoint_id: uuid.UUID) -> str:
        """A new secret; the current one keeps signing beside it for 24 h (a secret
        already rotated out is dropped: at most two sign at once)."""
        secret, now = new_secret(), self.runtime.clock()
        async with self.database.transaction() as session:
            row = await _owned(session, account_id, endpoint_id, lock=True)
            row.previous_secret, row.secret = row.secret, secret
            row.previous_secret_expires_at = now + ROTATION_OVERLAP
            row.updated_at = now
            audit.record(session, "webhook_endpoint.secret_rotated", account_id=account_id,
                         object_type="webhook_endpoint", object_id=row.id,
                         changes={"previous_secret_expires_at": (None, row.previous_secret_expires_at)})
        return secret

    async def deliveries(self, account_id: uuid.UUID, endpoint_id: uuid.UUID, *, limit: int,
                         cursor: str | None) -> tuple[list[tuple[WebhookDelivery, str]], bool]:
        """The endpoint's deliveries, newest first, with each event's type."""
        after = None
        if cursor is not None:
            try:
                after = uuid.UUID(cursor)
            except ValueError:
                raise InvalidRequest("The cursor is not valid.", code="invalid_cursor", param="cursor") from None
        async with self.database.transaction() as session:
            await _owned(session, account_id, endpoint_id)
            query = (select(WebhookDelivery, OutboundEvent.type)
                     .join(OutboundEvent, OutboundEvent.id == WebhookDelivery.event_id)
                     .where(WebhookDelivery.endpoint_id == endpoint_id)
                     .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit + 1))
            if after is not None:
                mark = (await session.execute(select(WebhookDelivery.created_at, WebhookDelivery.id).where(
                    WebhookDelivery.id == after, WebhookDelivery.endpoint_id == endpoint_id))).first()
                if mark is None:
                    raise InvalidRequest("The cursor is not valid.", code="invalid_cursor", param="cursor")
                query = query.where(tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < tuple(mark))
            rows = [(delivery, kind) for delivery, kind in (await session.execute(query)).all()]
        return rows[:limit], len(rows) > limit

    async def redeliver(self, account_id: uuid.UUID, endpoint_id: uuid.UUID,
                        delivery_id: uuid.UUID) -> tuple[WebhookDelivery, str]:
        """Send it again now (whatever became of it), with a fresh retry window."""
        async with self.database.transaction() as session:
            endpoint = await _owned(session, account_id, endpoint_id)
            found = (await session.execute(
                select(WebhookDelivery, OutboundEvent.type)
                .join(OutboundEvent, OutboundEvent.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id)
                .with_for_update(of=WebhookDelivery))).first()
            if found is None:
                raise NotFound("No such delivery.", param="delivery_id")
            delivery, kind = found
            now = self.runtime.clock()
            before = delivery.status
            delivery.status, delivery.next_attempt_at, delivery.window_start = PENDING, now, now
            audit.record(session, "webhook_delivery.retried", account_id=account_id, object_type="webhook_delivery",
                         object_id=delivery.id, changes={"status": (before, PENDING)})
            if endpoint.status == ENABLED:
                await session.execute(text(NOTIFY), {"endpoint": str(endpoint.id)})
        return delivery, kind


def set_status(session: AsyncSession, row: WebhookEndpoint, status: str, reason: str | None, now: datetime, *,
               action: str, actor: audit.Actor | None = None) -> None:
    """An endpoint's status change, audited as webhook_endpoint.<action>."""
    before = row.status
    row.status, row.status_reason, row.updated_at = status, reason, now
    audit.record(session, f"webhook_endpoint.{action}", account_id=row.account_id, object_type="webhook_endpoint",
                 object_id=row.id, actor=actor,
                 changes={"status": (before, status), "status_reason": (None, reason)})


async def _owned(session: AsyncSession, account_id: uuid.UUID, endpoint_id: uuid.UUID, *,
                 lock: bool = False) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.account_id == account_id)
    row = await session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFound("No such webhook endpoint.", param="id")
    return row


def _checked_events(events: list[str]) -> list[str]:
    if "*" in events:
        if len(events) > 1:
            raise InvalidRequest('"*" subscribes to every event: send it alone.', code="invalid_events",
                                 param="events")
        return ["*"]
    unknown = sorted(set(events) - EVENT_TYPES)
    if unknown:
        raise InvalidRequest(f"Unknown event type: {unknown[0][:100]}. Known: {', '.join(sorted(EVENT_TYPES))}.",
                             code="unknown_event_type", param="events")
    return list(dict.fromkeys(events))


async def _checked_url(url: str, settings: Settings, runtime: Runtime) -> None:
    try:
        await targets.check(url, runtime.resolver, allow_private=settings.webhooks_private_targets_allowed)
    except targets.TargetRefused as refused:
        raise InvalidRequest(str(refused), code=refused.code, param="url") from None
