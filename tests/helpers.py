"""Test helpers. ``wait_for`` is the sanctioned way to wait for a condition."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_for(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str | None = None,
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy.

    Returns that truthy value. Raises ``AssertionError`` if ``timeout`` seconds
    pass first; exceptions raised by the predicate propagate immediately.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        last = result
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(
                f"condition not met within {timeout}s: {what} (last value: {last!r})"
            )
        await asyncio.sleep(interval)
