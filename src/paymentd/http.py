"""The HTTP edge: request ids, security headers, body limits, the card-data and
nesting guards, exact JSON numbers.

The guards run before any parsing or logging, so a card number sent by mistake
is refused without ever reaching validation errors, the database or a log line,
and a hostile body (400,000 nested `[`) is a 400 before any recursive parser sees it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import structlog
from fastapi import Request
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paymentd import metrics
from paymentd.audit import context as audit_context
from paymentd.card_data import contains_card_number, find_card_number
from paymentd.db import store_unavailable
from paymentd.errors import InvalidRequest, PaymentdError, TemporarilyUnavailable
from paymentd.logs import log
from paymentd.security_headers import DEFAULT_HSTS, security_headers

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,200}$")
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_SIGNED_BY_STRIPE = {"/api/webhooks/stripe"}
# Deeper JSON than any client of ours sends (metadata is flat; Stripe's events nest
# about ten levels); bounding it keeps every recursive parser after us safe.
MAX_JSON_DEPTH = 64
_ID_HEADERS = {b"x-request-id", b"paymentd-request-id"}


def new_request_id() -> str:
    """The server's own id for one request: unique, so logs and the audit trail key on it."""
    return f"req_{uuid.uuid4().hex}"


def caller_request_id(header: str | None) -> str | None:
    """The caller's X-Request-Id when it is a sane token, kept for correlation only:
    anyone can send any value, so two requests may share it."""
    if header and _REQUEST_ID_RE.match(header):
        return header
    return None


class ExactJSONRequest(Request):
    """JSON numbers become Decimal, never float: `19.99` stays exactly 19.99."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_float=Decimal)
        return self._json


class ExactJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def exact_json_handler(request: Request) -> Any:
            return await handler(ExactJSONRequest(request.scope, request.receive))

        return exact_json_handler


async def send_error(send: Send, error: PaymentdError, request_id: str) -> None:
    """An error answered by middleware itself (the app never saw the request). Inside
    EdgeMiddleware's `send`, so the id and security headers are added on the way out."""
    body = json.dumps(error.envelope(request_id)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *[(k.lower().encode(), v.encode()) for k, v in error.headers().items()],
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class EdgeMiddleware:
    """Pure ASGI so it can see (and refuse) the raw body before FastAPI parses it."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, hsts: str = DEFAULT_HSTS) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        # Our own id keys the logs, the error envelope and the audit trail; the caller's
        # is echoed in X-Request-Id and logged beside it, for their correlation.
        request_id = new_request_id()
        caller_id = caller_request_id(headers.get(b"x-request-id", b"").decode("latin-1"))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["caller_request_id"] = caller_id
        audit_context.begin_request(request_id, scope["client"][0] if scope.get("client") else None)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if caller_id:
            structlog.contextvars.bind_contextvars(caller_request_id=caller_id)
        started = state["received_at"] = time.perf_counter()  # the response budget counts from here
        status_holder = {"status": 500}
        # "https" under uvicorn's TLS, or behind a proxy it trusts (X-Forwarded-Proto).
        tls = scope.get("scheme") == "https"
        ids = [(b"x-request-id", (caller_id or request_id).encode()), (b"paymentd-request-id", request_id.encode())]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["started"] = True
                status_holder["status"] = message["status"]
                own = [h for h in message.get("headers", []) if h[0].lower() not in _ID_HEADERS]
                message["headers"] = [*security_headers(own, tls=tls, hsts=self.hsts), *ids]
            await send(message)

        try:
            refuse_nul_in_url(scope)
            if scope["method"] in _BODY_METHODS:
                body = await self._read_body(receive)
                # Stripe's own signed events are exempt: they never carry a full card
                # number, and refusing one would only delay it to the reconciler.
                if scope["path"] not in _SIGNED_BY_STRIPE:
                    self._refuse_card_data(body)
                else:
                    refuse_deep_json(body)
                receive = replay_body(body, receive)
        except PaymentdError as error:
            status_holder["status"] = error.status
            await send_error(send_with_id, error, request_id)
        else:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as error:  # noqa: BLE001 - every failure answers in the envelope
                if status_holder.get("started"):
                    raise  # too late for another answer; the server closes the connection
                answer = unexpected_error(error)
                status_holder["status"] = answer.status
                await send_error(send_with_id, answer, request_id)
        finally:
            elapsed = time.perf_counter() - started
            metrics.http_request(scope["method"], route_template(scope), status_holder["status"], elapsed)
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status_holder["status"],
                # The caller's address as uvicorn resolved it (X-Forwarded-For from trusted proxies).
                client_ip=(scope.get("client") or ("",))[0] or None,
                duration_ms=round(elapsed * 1000, 2),
            )

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise InvalidRequest("The request body is too large.", code="body_too_large", status=413)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def _refuse_card_data(body: bytes) -> None:
        if not body:
            return
        text = body.decode("utf-8", errors="replace")
        try:
            document = _parse_bounded(text, body)
        except ValueError:
            document = None
            path = "body" if contains_card_number(text) else None
        else:
            path = find_card_number(document)
        if path is None and document is not None:
            _refuse_nul(document, "")
        if path is not None:
            raise InvalidRequest(
                "Card numbers must never be sent to paymentd: collect them with Stripe.js "
                "and send the payment method id (pm_...) instead.",
                code="card_data_not_allowed",
                param=path,
            )


def _too_deeply_nested() -> InvalidRequest:
    return InvalidRequest(f"The JSON body is nested too deeply (at most {MAX_JSON_DEPTH} levels).",
                          code="json_too_deep")


def _parse_bounded(text: str, body: bytes) -> Any:
    """json.loads, refusing nesting deeper than MAX_JSON_DEPTH. The C parser recurses
    and raises RecursionError near the interpreter's limit; anything it accepts is then
    measured without recursion, but only when the body holds enough brackets to be
    too deep (bytes.count is nearly free; the hot path's small bodies skip the walk)."""
    try:
        document = json.loads(text, parse_float=Decimal)
    except RecursionError:
        raise _too_deeply_nested() from None
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _depth_exceeds(document, MAX_JSON_DEPTH):
        raise _too_deeply_nested()
    return document


def refuse_deep_json(body: bytes) -> None:
    """The nesting guard alone, for bodies exempt from the card-data guard."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return
    try:
        _parse_bounded(body.decode("utf-8", errors="replace"), body)
    except ValueError:
        return  # not JSON: the route's own parser refuses it


def _depth_exceeds(document: Any, limit: int) -> bool:
    stack = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def route_template(scope: Scope) -> str:
    """The route a request matched, as declared ("/api/payments/{payment_id}"): a label
    with a bounded set of values, never the raw path. Unmatched paths share one label."""
    if (label := scope.get(ROUTE_LABEL)) is not None:
        return label
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


ROUTE_LABEL = "paymentd.route"  # set by middleware that answers for a declared path itself


def unexpected_error(error: Exception) -> PaymentdError:
    """An exception no handler turned into an answer: our database in trouble is a
    retryable 503; anything else is a bug, a 500, logged with its traceback."""
    if store_unavailable(error):
        log.warning("database_unavailable", error_type=type(error).__name__)
        return TemporarilyUnavailable("The service is briefly unavailable; retry.")
    log.error("unhandled_error", error_type=type(error).__name__, exc_info=error)
    return PaymentdError("An unexpected error occurred; nothing was half-written.")


def refuse_nul_in_url(scope: Scope) -> None:
    """A NUL in the path or a query parameter (raw or %00) can reach no PostgreSQL text
    column: a 400 here, not a 500 from the driver in whichever query meets it first."""
    query = scope.get("query_string", b"")
    if "\x00" in scope["path"] or b"\x00" in query or b"%00" in query:
        raise InvalidRequest("The URL must not contain NUL characters.", code="parameter_invalid")


def _refuse_nul(value: Any, path: str) -> None:
    """PostgreSQL text cannot hold NUL; refuse it here rather than fail on insert."""
    if isinstance(value, str) and "\x00" in value:
        raise InvalidRequest("Strings must not contain NUL characters.", code="parameter_invalid", param=path or None)
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key, path)
            _refuse_nul(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_nul(item, f"{path}.{index}" if path else str(index))


def replay_body(body: bytes, original: Receive) -> Receive:
    """Hands the buffered body to the app once, then passes through (for disconnects)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive
