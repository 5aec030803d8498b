"""Following a queue's event stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ._cluster import ConnectorOwner, connect
from ._stream import decode_entry, text
from .connection import Connection, raise_if_cancelled
from .keys import QueueKeys
from .options import validate_queue_name
from .partitions import PARTITIONS_FIELD, partition_names

__all__ = ["QueueEvents"]


class QueueEvents(ConnectorOwner):
    """Async iteration over a queue's events, as dicts::

        async for event in QueueEvents("email", connection=url):
            print(event["event"], event["job_id"])

    Each dict has ``event`` (added, waiting, prioritized, delayed, duplicated,
    deduplicated, waiting-children, active, progress, completed, retrying,
    failed, stalled, removed, paused, resumed), ``job_id``, ``id`` (the
    stream entry id) and the event's own fields (``return_value``,
    ``failed_reason``, ``attempts_made``, ``progress``, ``delay``, ...). A
    return value over 4 KiB is left out of its ``completed`` event, which says
    ``return_value_bytes`` instead: read it with ``Queue.get_job``.
    ``last_id="$"`` starts with events that happen from now on; pass an entry id
    (or ``"0"``) to replay what the capped stream still holds.

    Of a partitioned queue, the events of every partition (one reader per
    partition, each blocking on its own stream: they may be on different
    nodes); ordered within a partition, interleaved across them. An entry id
    as ``last_id`` applies to each partition's stream; ``last_ids`` holds
    each stream's position as read.
    """

    def __init__(
        self,
        queue_name: str,
        connection: Connection = None,
        *,
        prefix: str = "conveyor",
        last_id: str = "$",
        block: int = 5_000,
    ) -> None:
        self.name = validate_queue_name(queue_name)
        self.connector, self._owns_connector = connect(connection)
        self.key = QueueKeys(prefix, queue_name).events
        self.client = self.connector.client_for(self.key)
        self._meta = QueueKeys(prefix, queue_name).meta
        self._prefix = prefix
        #: Of a partitioned queue: each partition's stream key -> the last entry id read.
        self.last_ids: dict[str, str] = {}
        self.last_id = last_id
        self.block = block

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        partitions = await self.client.hget(self._meta, PARTITIONS_FIELD)
        if partitions is not None:
            async for event in self._merged(int(partitions)):
                yield event
            return
        if self.last_id == "$":
            # Pin the position now, so nothing between two reads is missed.
            newest: Any = await self.client.xrevrange(self.key, count=1)
            self.last_id = text(newest[0][0]) if newest else "0-0"
        while True:
            reply: Any = await self.client.xread(
                {self.key: self.last_id}, count=500, block=self.block
            )
            raise_if_cancelled()
            if not reply:
                continue
            for entry_id, fields in reply[0][1]:
                self.last_id = text(entry_id)
                for event in decode_entry(entry_id, fields):
                    yield event

    async def _merged(self, partitions: int) -> AsyncIterator[dict[str, Any]]:
        """The events of every partition's stream, as each reader gets them."""
        keys = [QueueKeys(self._prefix, name).events
                for name in partition_names(self.name, partitions)]
        starts = [self.last_id] * len(keys)
        if self.last_id == "$":  # pin every stream's position before reading any
            newest: list[Any] = await asyncio.gather(
                *(self.connector.client_for(k).xrevrange(k, count=1) for k in keys))
            starts = [text(entries[0][0]) if entries else "0-0" for entries in newest]
        self.last_ids.update(zip(keys, starts, strict=True))
        found: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue(1000)

        async def read(key: str, last_id: str) -> None:
            try:
                while True:
                    reply: Any = await self.connector.client_for(key).xread(
                        {key: last_id}, count=500, block=self.block)
                    for entry_id, fields in reply[0][1] if reply else ():
                        last_id = self.last_ids[key] = text(entry_id)
                        for event in decode_entry(entry_id, fields):
                            await found.put(event)
            except Exception as exc:  # the consumer raises it
                await found.put(exc)

        readers = [asyncio.create_task(read(k, s)) for k, s in zip(keys, starts, strict=True)]
        try:
            while True:
                item = await found.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for reader in readers:
                reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*readers, return_exceptions=True)
