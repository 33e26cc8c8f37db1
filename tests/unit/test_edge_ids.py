"""The edge's request ids, in memory: the app sees the server's id, a response
cannot forge either id header, and each request gets a new one. (That the logs
key on it is checked on a real process's log in tests/e2e/test_tls.py.)"""

from __future__ import annotations

import httpx

from paymentd.http import EdgeMiddleware


async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """An app that tries to set the id headers itself and says which id it was given."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"x-request-id", b"forged-by-app"),
                            (b"Paymentd-Request-Id", b"forged-too")]})
    await send({"type": "http.response.body", "body": scope["state"]["request_id"].encode()})


async def call(headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=EdgeMiddleware(app, max_body_bytes=1000))
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
        return await client.get("/x", headers=headers)


async def test_the_app_sees_the_server_id_and_cannot_forge_the_headers() -> None:
    response = await call({"X-Request-Id": "client-trace-7"})
    server_id = response.headers["paymentd-request-id"]
    assert response.text == server_id and server_id.startswith("req_")
    assert response.headers.get_list("x-request-id") == ["client-trace-7"]
    assert response.headers.get_list("paymentd-request-id") == [server_id]


async def test_a_new_id_each_time_and_ours_when_the_callers_is_not_sane() -> None:
    first, second = await call({}), await call({})
    assert first.headers["paymentd-request-id"] != second.headers["paymentd-request-id"]
    assert first.headers["x-request-id"] == first.headers["paymentd-request-id"]
    odd = await call({"X-Request-Id": "two words"})
    assert odd.headers["x-request-id"] == odd.headers["paymentd-request-id"]
