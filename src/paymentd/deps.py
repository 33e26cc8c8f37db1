"""FastAPI dependencies: the database, the provider and the calling principal.

Tests swap any of them with `app.dependency_overrides`, never by patching imports.
All are `async def`: FastAPI runs plain `def` dependencies in a thread pool,
a hand-off that cost more than the lookups themselves.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from paymentd.audit import context as audit_context
from paymentd.audit import failures as audit_failures
from paymentd.auth.keys import Scope
from paymentd.auth.middleware import refused_key
from paymentd.auth.service import Principal
from paymentd.config import Settings
from paymentd.db import Database
from paymentd.errors import AuthenticationFailed, PermissionDenied
from paymentd.providers.base import PaymentProvider

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer pd_...`")


async def get_database(request: Request) -> Database:
    return request.app.state.database


async def get_provider(request: Request) -> PaymentProvider:
    return request.app.state.provider


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def request_id(request: Request) -> str:
    return request.scope["state"]["request_id"]


async def idempotency_seed(request: Request) -> uuid.UUID | None:
    """Set when the request carries an Idempotency-Key: ids derived from it are
    the same when a crashed request is run again."""
    return request.scope["state"].get("idempotency_seed")


def require(scope: Scope) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that authenticates the key and checks it holds `scope`."""

    async def principal(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Principal:
        if credentials is None:
            audit_failures.note(request, 401)
            raise AuthenticationFailed("No API key: send `Authorization: Bearer <api key>`.", code="api_key_missing")
        # AccessMiddleware authenticated this request already (auth/middleware.py).
        found = request.scope["state"].get("principal")
        if found is None:
            checked = await request.app.state.authenticator.check(credentials.credentials)
            if not isinstance(checked, Principal):
                audit_failures.note(request, 401, credentials.credentials, checked.account_id)
                raise refused_key(checked.reason)
            found = checked
        if not found.allows(scope):
            audit_failures.note(request, 403, credentials.credentials, found.account_id)
            raise PermissionDenied(f"This API key lacks the `{scope.value}` scope.", code="missing_scope")
        # Stored with an Idempotency-Key's answer: a replay needs the same scopes (idempotency.py).
        request.scope["state"].setdefault("checked_scopes", set()).add(scope.value)
        structlog.contextvars.bind_contextvars(account_id=str(found.account_id))
        audit_context.act_as(audit_context.Actor("api_key", str(found.api_key_id)))
        return found

    return principal


_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait=(\d+)")


async def wait_budget(request: Request, response: Response) -> float:
    """Seconds this request may still wait on Stripe: the configured budget, or longer
    when the caller asks with `Prefer: wait=N` (capped by configuration), counted from
    the request's arrival, so time spent queued in a busy process comes out of it too."""
    settings = request.app.state.settings
    match = _PREFER_WAIT.search(request.headers.get("prefer", ""))
    if match is None:
        budget = settings.sync_budget_ms / 1000
    else:
        budget = float(min(int(match.group(1)), settings.max_wait_s))
        response.headers["Preference-Applied"] = f"wait={budget:g}"
    received_at = request.scope["state"].get("received_at", time.perf_counter())
    return max(0.0, budget - (time.perf_counter() - received_at))


WaitBudget = Annotated[float, Depends(wait_budget)]
