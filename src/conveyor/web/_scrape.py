"""The Redis reads of one Prometheus scrape, at a cost that does not grow with
jobs, workers or schedules.

A scrape sends SMEMBERS of the registry and one TIME, then per queue:

- one pipeline of ``16 + r`` commands: the metrics reads of
  :meth:`conveyor.metrics.QueueMetrics.pipe_metrics` (EXISTS, see below; HVALS
  of the completed and failed per-minute counts; an HGETALL of each of the
  ``r`` minutes of timings not read before: all 180 of the histograms' window
  at an inspector's first scrape, then the current minute and those that ended
  since its previous scrape, so ``r`` is 1 for scrapes in the same minute, 2 a
  minute apart), LLEN/ZCARD of the 7 states, HMGET paused and partitions, ZRANGE of the
  workers and 4 reads of the groups' sets;
- one more, only when the queue has workers or groups: an EXISTS of the
  workers' heartbeats, and an LLEN per group holding jobs (no total of grouped
  jobs is kept).

A partitioned queue (its meta names its partition count) is then read as its
partitions, each as above, and reported as one queue (their sums).

A minute's histogram takes no write once the minute is over (scripts stamp
with Redis ``TIME``), so ended minutes are kept between scrapes, per
:class:`~conveyor.inspection.Inspector`. The EXISTS counts the kept non-empty
minutes' keys (and the completed counts' key, so it always has one): if one
is gone (the queue was obliterated, Redis evicted it), the queue is read
afresh.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any

from .._stream import text
from ..connection import time_ms
from ..inspection import Inspector
from ..keys import STATES, JobState
from ..metrics import KEPT_TIME_MINUTES, MINUTE_MS, sum_histograms
from ..partitions import partition_names
from ..queue import Queue

__all__ = ["QueueSample", "read_queues"]

_PARALLEL_QUEUES = 8
#: Ended minutes' histograms, field -> count ({} for a minute without one), by
#: inspector, then queue, then minute.
_Ended = dict[str, dict[int, dict[str, int]]]
_ended: weakref.WeakKeyDictionary[Inspector, _Ended] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class QueueSample:
    """What a scrape reports of one queue."""

    name: str
    counts: dict[str, int]
    completed: int
    failed: int
    #: Log bucket -> attempts, over the last KEPT_TIME_MINUTES minutes.
    wait: dict[int, int]
    processing: dict[int, int]
    workers: int
    paused: bool
    #: Of a partitioned queue's own keys: its partition count (then read them).
    partitions: int = 0


async def read_queues(inspector: Inspector) -> list[QueueSample]:
    """A sample of every queue the inspector knows, by name."""
    ended = _ended.setdefault(inspector, {})
    names = await inspector.queue_names()
    for gone in {n for n in ended if n not in names and n.rpartition("#")[0] not in names}:
        del ended[gone]  # a partition's entries stay while its queue is listed
    minute = time_ms(await inspector.client.time()) // MINUTE_MS
    limit = asyncio.Semaphore(_PARALLEL_QUEUES)

    async def one(name: str) -> QueueSample:
        async with limit:
            sample = await _read_queue(inspector.queue(name), minute, ended.setdefault(name, {}))
        if not sample.partitions:
            return sample
        parts = await asyncio.gather(*(
            one(part) for part in partition_names(name, sample.partitions)))
        return _merged(name, parts)

    return list(await asyncio.gather(*(one(n) for n in names)))


async def _read_queue(
    queue: Queue, minute: int, ended: dict[int, dict[str, int]], *, again: bool = True,
) -> QueueSample:
    first = minute - KEPT_TIME_MINUTES + 1
    for old in [m for m in ended if m < first]:
        del ended[old]
    kept = [m for m, histogram in ended.items() if histogram]
    unread = [m for m in range(first, minute + 1) if m not in ended]
    keys = queue.keys
    async with queue.client.pipeline(transaction=False) as pipe:
        at = queue.pipe_metrics(pipe, kept, unread)
        for state in STATES:
            key = keys.state_key(state)
            if state == JobState.WAITING:
                pipe.llen(key)
            else:
                pipe.zcard(key)
        pipe.hmget(keys.meta, ["paused", "partitions"])
        pipe.zrange(keys.workers, 0, -1)
        pipe.zrange(keys.key("groups"), 0, -1)
        pipe.smembers(keys.key("groups:busy"))
        pipe.zrange(keys.key("groups:limited"), 0, -1)
        pipe.hkeys(keys.key("groups:active"))
        replies: list[Any] = await pipe.execute()
    metrics, replies = queue.metrics_snapshot(replies[:at]), replies[at:]
    if metrics.existing != bool(metrics.completed) + len(kept):
        ended.clear()  # a kept minute is gone: the queue's keys were deleted
        if again:
            return await _read_queue(queue, minute, ended, again=False)
    for m, histogram in zip(unread, metrics.histograms, strict=True):
        if m < minute:
            ended[m] = histogram
    n = len(STATES)
    counts = dict(zip(STATES, (int(c) for c in replies[:n]), strict=True))
    (paused, partitions), worker_ids = replies[n:n + 2]
    groups = sorted({text(g) for reply in replies[n + 2:n + 6] for g in reply})
    live = 0
    if worker_ids or groups:
        async with queue.client.pipeline(transaction=False) as pipe:
            if worker_ids:
                pipe.exists(*(keys.worker(text(i)) for i in worker_ids))
            for group in groups:
                pipe.llen(keys.group(group))
            more = await pipe.execute()
        if worker_ids:
            live, more = int(more[0]), more[1:]
        counts["waiting"] += sum(int(c) for c in more)
    # unread ends with this minute, whose histogram is read afresh each scrape
    wait, processing = sum_histograms([*ended.values(), metrics.histograms[-1]])
    return QueueSample(keys.queue, counts, metrics.completed, metrics.failed, wait,
                       processing, live, paused is not None,
                       0 if partitions is None else int(partitions))


def _merged(name: str, parts: list[QueueSample]) -> QueueSample:
    """A partitioned queue's sample: its partitions' summed (a worker serves
    every partition: the most any partition counts)."""
    def summed(dicts: list[dict[Any, int]]) -> dict[Any, int]:
        total: dict[Any, int] = {}
        for one in dicts:
            for key, n in one.items():
                total[key] = total.get(key, 0) + n
        return total

    return QueueSample(
        name, summed([p.counts for p in parts]), sum(p.completed for p in parts),
        sum(p.failed for p in parts), summed([p.wait for p in parts]),
        summed([p.processing for p in parts]), max(p.workers for p in parts),
        any(p.paused for p in parts),
    )
