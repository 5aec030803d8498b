"""The seed's worker listeners (``completed``, ``failed``), across processes:
follow the queues' event streams and log each job that finishes or fails."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from conveyor import QueueEvents

__all__ = ["follow"]

log = logging.getLogger("examples.shop.events")


async def follow(queues: Iterable[str], connection: str,
                 emit: Callable[[str], None] = log.info) -> None:
    """Emit ``<queue>: job <id> completed`` or ``... failed: <reason>`` (every
    failed attempt, as the seed's ``failed`` listener) until cancelled."""

    async def one(name: str) -> None:
        async with QueueEvents(name, connection, block=1_000) as events:
            async for event in events:
                kind, job_id = event["event"], event["job_id"]
                if kind == "completed":
                    emit(f"{name}: job {job_id} completed")
                elif kind in ("retrying", "failed"):
                    emit(f"{name}: job {job_id} failed: {event.get('failed_reason')}")

    await asyncio.gather(*(one(name) for name in queues))
