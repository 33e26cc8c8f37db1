"""Request and response bodies of /api/webhook_endpoints (API.md "Outbound webhooks")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from paymentd.outbound.models import WebhookDelivery, WebhookEndpoint
from paymentd.outbound.targets import MAX_URL_LENGTH
from paymentd.schemas import RequestModel

EventName = Annotated[str, Field(min_length=1, max_length=100)]


class EndpointCreate(RequestModel):
    url: Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH)]
    events: Annotated[list[EventName], Field(min_length=1, max_length=50)]
    description: Annotated[str, Field(max_length=500)] | None = None


class EndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    status: str  # enabled | paused | disabled
    # Why it is paused or disabled (by paymentd, or "paused by the merchant").
    status_reason: str | None
    # While a rotated-out secret still signs, beside the new one.
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointCreated(EndpointOut):
    secret: str  # whsec_..., shown only here


class EndpointList(BaseModel):
    data: list[EndpointOut]


class SecretOut(BaseModel):
    secret: str


class DeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: str
    event_type: str
    object_type: str
    object_id: str
    sequence: int
    status: str  # pending | succeeded | failed (given up)
    attempts: int
    response_status: int | None
    response_body: str | None  # the first few hundred bytes of the endpoint's answer
    error: str | None  # timeout, refused address, connection error... (no response)
    latency_ms: int | None
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    has_more: bool
    next_cursor: str | None


def present_endpoint(row: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(id=row.id, url=row.url, events=list(row.events), description=row.description,
                       status=row.status, status_reason=row.status_reason,
                       previous_secret_expires_at=row.previous_secret_expires_at,
                       created_at=row.created_at, updated_at=row.updated_at)


def present_delivery(row: WebhookDelivery, event_type: str) -> DeliveryOut:
    object_type, _, object_id = row.object_key.partition(":")
    return DeliveryOut(id=row.id, event_id=row.event_id, event_type=event_type, object_type=object_type,
                       object_id=object_id, sequence=row.sequence, status=row.status, attempts=row.attempts,
                       response_status=row.response_status, response_body=row.response_body, error=row.error,
                       latency_ms=row.latency_ms,
                       next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
                       last_attempt_at=row.last_attempt_at, delivered_at=row.delivered_at,
                       created_at=row.created_at)
