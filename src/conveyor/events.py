"""Following a queue's event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ._cluster import ConnectorOwner, connect
from ._stream import decode_entry, text
from .connection import Connection, raise_if_cancelled
from .keys import QueueKeys
from .options import validate_queue_name

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
        self.last_id = last_id
        self.block = block

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
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
