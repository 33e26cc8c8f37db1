"""`POST /api/webhooks/stripe`: verify, store once, queue, answer 200 fast.

No API key (Stripe cannot send one): the Stripe-Signature header is the
authentication. Nothing is applied here; the job does that, so a slow database
lock or Stripe call never makes Stripe time out and redeliver. An event that can
change nothing is stored closed, without a job (`inbox.receive`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from paymentd.errors import InvalidRequest
from paymentd.logs import log
from paymentd.payments import consistency
from paymentd.providers.base import WebhookSignatureError
from paymentd.schemas import error_responses
from paymentd.webhooks import inbox

router = APIRouter(tags=["webhooks"])


class WebhookAck(BaseModel):
    received: bool
    # True when this event id was stored before: acknowledged, not applied again.
    duplicate: bool


@router.post(
    "/api/webhooks/stripe",
    summary="Receive a Stripe event (signed with Stripe-Signature)",
    response_model=WebhookAck,
    responses=error_responses(400, 413, 500),
)
async def stripe_webhook(request: Request) -> WebhookAck:
    payload = await request.body()
    signature = request.headers.get("stripe-signature", "")
    try:
        event = request.app.state.provider.parse_webhook(payload, signature)
    except WebhookSignatureError as error:
        # The reason (stale, mismatch, malformed) goes to the log, never to the caller.
        log.warning("webhook.refused", reason=error.code)
        raise InvalidRequest(
            "The Stripe-Signature header does not verify this payload.", code="signature_invalid"
        ) from None
    provider = request.app.state.provider
    arrival = await inbox.receive(request.app.state.database, request.app.state.jobs, event,
                                  consistency.Origin.of(provider),
                                  fraud_enabled=request.app.state.payments.fraud.enabled)
    log.info("webhook.received", event_id=event.id, type=event.type, duplicate=not arrival.new,
             closed_on_arrival=arrival.outcome)
    return WebhookAck(received=True, duplicate=not arrival.new)
