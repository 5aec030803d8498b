"""Queue administration: cleaning, draining, bulk retry and promotion, the
dead-letter set and the worker registry. Mixed into :class:`conveyor.Queue`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._scripts import Scripts
    from .keys import QueueKeys

__all__ = ["QueueAdmin"]


class QueueAdmin:
    """Admin calls of a queue; each one is one atomic script (or a series of
    atomic, bounded scripts for calls that page through a large set)."""

    name: str
    client: Redis
    keys: QueueKeys
    scripts: Scripts
