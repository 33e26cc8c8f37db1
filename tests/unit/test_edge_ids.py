"""The edge's request ids in the logs: every line of a request carries the server's
id, and the caller's X-Request-Id only beside it (`caller_request_id`)."""

from __future__ import annotations

import httpx
import structlog
from structlog.testing import capture_logs

from paymentd.http import EdgeMiddleware
from paymentd.logs import log


async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """An app that logs a line of its own and says which id it was given."""
    log.info("inside", seen=scope["state"]["request_id"])
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"x-request-id", b"forged-by-app")]})
    await send({"type": "http.response.body", "body": scope["state"]["request_id"].encode()})


async def call(headers: dict[str, str]) -> tuple[httpx.Response, list[dict]]:
    transport = httpx.ASGITransport(app=EdgeMiddleware(app, max_body_bytes=1000))
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            response = await client.get("/x", headers=headers)
    return response, lines


async def test_logs_key_on_the_server_id_with_the_callers_beside_it() -> None:
    response, lines = await call({"X-Request-Id": "client-trace-7"})
    server_id = response.headers["paymentd-request-id"]
    assert response.text == server_id and server_id.startswith("req_")
    assert response.headers["x-request-id"] == "client-trace-7"  # the app's own value never wins
    assert [line["event"] for line in lines] == ["inside", "request"]
    for line in lines:
        assert line["request_id"] == server_id
        assert line["caller_request_id"] == "client-trace-7"
    assert lines[0]["seen"] == server_id


async def test_no_caller_id_no_caller_field_and_a_new_id_each_time() -> None:
    first, lines = await call({})
    second, _ = await call({})
    assert first.headers["paymentd-request-id"] != second.headers["paymentd-request-id"]
    assert first.headers["x-request-id"] == first.headers["paymentd-request-id"]
    assert all("caller_request_id" not in line for line in lines)
    # A caller id that is no sane token is neither echoed nor logged.
    odd, odd_lines = await call({"X-Request-Id": "two words"})
    assert odd.headers["x-request-id"] == odd.headers["paymentd-request-id"]
    assert all("caller_request_id" not in line for line in odd_lines)
