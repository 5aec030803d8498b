"""Calling a worker's event listeners (``Worker.on``): a listener may be
``async``, and one that fails is logged and reported to the ``error``
listeners, never to the worker's loop."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

__all__ = ["emit"]

log = logging.getLogger("conveyor.worker")


def emit(listeners: Mapping[str, Sequence[Callable[..., Any]]], event: str, *args: Any) -> None:
    """Call each listener of ``event`` with ``args``; await the async ones in tasks."""
    for callback in listeners.get(event, ()):
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                asyncio.ensure_future(result).add_done_callback(partial(_done, listeners))
        except Exception as exc:
            _failed(listeners, exc)


def _done(listeners: Mapping[str, Sequence[Callable[..., Any]]],
          future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        _failed(listeners, exc)


def _failed(listeners: Mapping[str, Sequence[Callable[..., Any]]], exc: BaseException) -> None:
    log.exception("worker event listener failed", exc_info=exc)
    with contextlib.suppress(Exception):
        for callback in listeners.get("error", ()):
            callback(exc)
