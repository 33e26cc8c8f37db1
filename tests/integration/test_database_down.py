"""PostgreSQL unreachable: a retryable 503 in the envelope, never a 500, and /readyz says so."""

from __future__ import annotations

import uuid

import httpx

from paymentd.app import create_app
from paymentd.config import Settings
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
