"""What every part of :class:`conveyor.Queue` stands on: its name, client, keys
and scripts, its add settings, and naming the queue in the registry.

:class:`conveyor.Queue` is assembled from mixins (:mod:`conveyor.admin`,
:mod:`conveyor.schedulers`, :mod:`conveyor.metrics`, :mod:`conveyor.groups`);
each of them subclasses :class:`QueueCore` instead of repeating these
declarations, and ``Queue.__init__`` sets them. A package-internal module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ValidationError
from .keys import registry_key

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._cluster import Connector
    from ._scripts import Scripts
    from .keys import QueueKeys

__all__ = ["QueueCore", "refuse_if_partitioned"]


class QueueCore:
    """The attributes a queue's mixins share (set by ``Queue.__init__``)."""

    name: str
    prefix: str
    connector: Connector
    client: Redis
    keys: QueueKeys
    scripts: Scripts
    keep_logs: int
    max_data_bytes: int
    default_job_options: dict[str, Any]
    _registered: bool

    async def _register(self) -> None:
        """Name this queue in the registry (once per Queue object: an add's cost)."""
        if not self._registered:
            # A partitioned queue's meta says so, and a plain Queue of that name
            # would add jobs no worker takes: read it in the same round trip
            # (two on a cluster, where the registry is in another slot).
            key = registry_key(self.prefix)
            registry = self.connector.client_for(key)
            if registry is self.client:
                async with self.client.pipeline(transaction=False) as pipe:
                    pipe.sadd(key, self.name)
                    pipe.hget(self.keys.meta, "partitions")
                    _, partitions = await pipe.execute()
            else:
                await registry.sadd(key, self.name)
                partitions = await self.client.hget(self.keys.meta, "partitions")
            refuse_if_partitioned(self.name, partitions)
            self._registered = True


def refuse_if_partitioned(name: str, partitions: Any) -> None:
    """A ValidationError on ``partitions`` if a queue's meta says it is
    partitioned (``partitions`` is its field there): a plain Queue of that name
    would add jobs where no worker looks."""
    if partitions is not None:
        raise ValidationError(
            "partitions", f"queue {name!r} is partitioned: open it with "
            f"Queue({name!r}, ..., partitions={int(partitions)})", None,
        )
