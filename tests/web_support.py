"""What the REST API tests share: an in-process client of an app (httpx over
ASGI, no socket) and readers of the JSON envelope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

API = "/api/v1"


def asgi_client(app: Any) -> httpx.AsyncClient:
    """A client of ``app`` in this process; its Host is loopback, as the guard wants."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


@asynccontextmanager
async def api_client(redis_url: str, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``create_app(redis_url, **options)``; the app's connections
    close when the block ends."""
    from conveyor.web import create_app

    app = create_app(redis_url, **options)
    try:
        async with asgi_client(app) as client:
            yield client
    finally:
        await app.state.conveyor.close()


def data(response: httpx.Response, status: int = 200) -> Any:
    """The ``data`` of a successful envelope, after checking the status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The ``error`` of a failed envelope, after checking the status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code, body
    found: dict[str, Any] = body["error"]
    return found
