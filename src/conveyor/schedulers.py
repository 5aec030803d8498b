"""Job schedulers: cron and fixed-interval schedules that produce jobs.
:class:`QueueSchedulers` is mixed into :class:`conveyor.Queue`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._scripts import Scripts
    from .keys import QueueKeys

__all__ = ["QueueSchedulers"]


class QueueSchedulers:
    """The job-scheduler calls of a queue."""

    name: str
    client: Redis
    keys: QueueKeys
    scripts: Scripts
