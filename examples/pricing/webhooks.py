"""Signed webhooks: the signature a receiver checks, and one delivery attempt.

Each request carries ``X-Pricing-Signature: t=<unix seconds>,v1=<hex>`` where
``v1`` is HMAC-SHA256 over ``"<t>.<body>"`` with the tenant's secret (as
Stripe signs), and ``X-Pricing-Message-Id``, so a receiver can drop the
duplicate a retry after a lost answer produces.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from conveyor import RateLimitError, UnrecoverableError

__all__ = ["WebhookDeliveryError", "deliver", "sign", "verify_signature"]

SIGNATURE_HEADER = "X-Pricing-Signature"
MESSAGE_ID_HEADER = "X-Pricing-Message-Id"
#: A receiver refuses signatures older than this (replays).
TOLERANCE_SECONDS = 300


class WebhookDeliveryError(Exception):
    """The endpoint did not take the message (5xx, timeout, refused): retried."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header's value for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str, *,
                     now: float | None = None) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is recent (the receiver's side)."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > TOLERANCE_SECONDS:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


async def deliver(client: httpx.AsyncClient, url: str, secret: str, message_id: str,
                  event_type: str, payload: dict[str, Any]) -> int:
    """POST one signed message; its status. Raises :class:`WebhookDeliveryError`
    (retry), :class:`RateLimitError` on 429 (the queue backs off, no attempt
    used) or :class:`UnrecoverableError` on another 4xx (retrying cannot help)."""
    body = json.dumps({"id": message_id, "type": event_type, "data": payload},
                      sort_keys=True).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body),
               MESSAGE_ID_HEADER: message_id}
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise WebhookDeliveryError(f"{url}: {type(exc).__name__}: {exc}") from exc
    status = response.status_code
    if status == 429:
        raise RateLimitError(int(response.headers.get("Retry-After", "1")) * 1000)
    if 400 <= status < 500 and status != 408:
        raise UnrecoverableError(f"{url} refused the webhook: HTTP {status}")
    if status >= 400:
        raise WebhookDeliveryError(f"{url} answered HTTP {status}")
    return status
