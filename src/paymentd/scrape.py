"""GET /metrics: who may scrape (PAYMENTD_METRICS_TOKEN, PAYMENTD_METRICS_ALLOW), and the
answer: every process's values added up (metrics.py) plus the job queue as it stands."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress

from fastapi import Request
from fastapi.responses import Response

from paymentd import metrics
from paymentd.auth.middleware import bearer_token, client_address
from paymentd.config import Settings
from paymentd.errors import AuthenticationFailed, PermissionDenied
from paymentd.jobs import backlog
from paymentd.logs import log

# A scrape must answer even when the database does not: the queue is then left out.
SAMPLE_TIMEOUT_S = 2.0


def check_access(settings: Settings, request: Request) -> None:
    """Raises the contract's 401/403 when configuration restricts /metrics and the caller is not let in."""
    if settings.metrics_allow:
        try:
            address = ipaddress.ip_address(client_address(request.scope))
        except ValueError:
            address = None
        if address is None or not any(address in ipaddress.ip_network(n, strict=False)
                                      for n in settings.metrics_allow):
            raise PermissionDenied("/metrics is not open to this address.", code="metrics_address_not_allowed")
    if settings.metrics_token is not None:
        token = bearer_token(request.scope) or ""
        expected = settings.metrics_token.get_secret_value()
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise AuthenticationFailed("/metrics needs `Authorization: Bearer <PAYMENTD_METRICS_TOKEN>`.",
                                       code="metrics_token_invalid")


async def exposition(request: Request) -> Response:
    sampled = []
    try:
        async with asyncio.timeout(SAMPLE_TIMEOUT_S):
            async with request.app.state.database.sql_connection() as conn:
                found = await backlog.read(conn)
        sampled = metrics.queue_families(found.depth, found.oldest_age_s)
    except Exception as error:  # noqa: BLE001 - the other metrics still answer
        log.warning("metrics.queue_unavailable", error_type=type(error).__name__)
    return Response(metrics.exposition(sampled), media_type=metrics.CONTENT_TYPE)
