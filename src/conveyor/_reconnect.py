"""The pause between a worker's attempts to reach Redis again: exponential,
capped, with full jitter, so a fleet of workers that lost Redis together does
not come back in lockstep (each pause is drawn anew, uniformly between 0 and
``min(cap, base * 2**failures)``).

redis-py's :class:`~redis.backoff.FullJitterBackoff` computes it. Not its
``ExponentialWithJitterBackoff``: that one caps after drawing
(``min(cap, random() * base * 2**failures)``), so once the exponential is far
past the cap nearly every draw is the cap itself, and the fleet is back in
step at the moments that matter, the long outages.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.backoff import AbstractBackoff, FullJitterBackoff

__all__ = ["RECONNECT_BASE_S", "RECONNECT_CAP_S", "Reconnect"]

log = logging.getLogger("conveyor.worker")

#: The default backoff's first ceiling and its cap, in seconds.
RECONNECT_BASE_S = 0.05
RECONNECT_CAP_S = 5.0
#: 2**failures stays a float this side of overflow (a worker may retry for days).
_MAX_EXPONENT = 32


class Reconnect:
    """Consecutive failed attempts of one worker and the pause after each."""

    def __init__(self, backoff: AbstractBackoff | None = None) -> None:
        self.backoff = backoff or FullJitterBackoff(cap=RECONNECT_CAP_S, base=RECONNECT_BASE_S)
        #: Failed attempts since Redis last answered (the caller zeroes it).
        self.failures = 0

    async def pause(self, who: str, deadline: float | None = None) -> None:
        """Sleep before the next attempt; not past ``deadline`` (``time.monotonic()``)."""
        delay = self.backoff.compute(min(self.failures, _MAX_EXPONENT))
        self.failures += 1
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - time.monotonic()))
        log.debug("%s: Redis unreachable; attempt %d in %.3f s", who, self.failures + 1, delay)
        await asyncio.sleep(delay)
