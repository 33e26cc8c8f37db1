"""PostgreSQL unreachable: a retryable 503 in the envelope, never a 500, and /readyz says so."""

from __future__ import annotations

import json
import time
import uuid

import httpx

from paymentd.app import create_app
from paymentd.config import Settings
from stripe_sim import signature_header
from tests.support.servers import ThreadedServer


def test_requests_get_503_when_the_database_is_down(settings: Settings) -> None:
    down = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/nowhere"})
    server = ThreadedServer(create_app(down)).start()
    try:
        key = "pd_aaaaaaaaaaaa_" + "B" * 43
        response = httpx.get(f"{server.url}/api/payments/{uuid.uuid4()}", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("api_error", "service_unavailable")
        assert response.headers["retry-after"] == "1"
        assert response.headers["x-request-id"] == error["request_id"]

        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("unavailable")
    finally:
        server.stop()


def test_a_webhook_gets_503_when_the_database_is_down_so_stripe_sends_it_again(settings: Settings) -> None:
    secret = "whsec_paymentd_tests_database_down"
    down = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/nowhere",
                                       "stripe_webhook_secrets": [secret]})
    server = ThreadedServer(create_app(down)).start()
    try:
        body = json.dumps({
            "id": f"evt_test_{uuid.uuid4().hex}", "object": "event", "type": "payment_intent.succeeded",
            "created": int(time.time()), "livemode": False, "pending_webhooks": 1, "api_version": None,
            "data": {"object": {"id": "pi_down_1", "object": "payment_intent", "status": "succeeded",
                                "amount": 1250, "currency": "usd"}},
        }).encode()
        response = httpx.post(f"{server.url}/api/webhooks/stripe", content=body, headers={
            "Stripe-Signature": signature_header(body, secret), "Content-Type": "application/json"})
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "service_unavailable"
    finally:
        server.stop()
