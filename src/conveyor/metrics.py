"""Queue metrics kept in Redis: jobs completed and failed per minute (two weeks),
and wait and processing time histograms per minute (the last three hours).

Workers write them in the same script that records a finished batch
(``scripts/includes/metrics.lua``), so they cost no extra round trip and are
the same for every reader. :class:`QueueMetrics` is mixed into
:class:`conveyor.Queue`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from ._queue_base import QueueCore
from .connection import time_ms
from .errors import ValidationError
from .options import check_int

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline


__all__ = ["MetricsSeries", "MetricsSnapshot", "Percentiles", "QueueMetrics", "Timings",
           "sum_histograms"]

MINUTE_MS = 60_000
#: Minutes of completed/failed counts kept (two weeks).
KEPT_MINUTES = 20_160
#: Minutes of wait/processing histograms kept (scripts/includes/metrics.lua).
KEPT_TIME_MINUTES = 180
_BUCKETS_PER_DOUBLING = 4

MetricKind = Literal["completed", "failed"]


@dataclass(frozen=True, slots=True)
class MetricsSeries:
    """Jobs that finished per minute, oldest minute first."""

    kind: str
    #: The first minute of ``counts`` (UTC, on a minute boundary).
    start: datetime
    counts: list[int]

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def points(self) -> list[tuple[datetime, int]]:
        """(minute, count) pairs, oldest first."""
        return [(self.start + timedelta(minutes=i), c) for i, c in enumerate(self.counts)]

    def per_second(self, minutes: int = 1) -> float:
        """Average rate over the last ``minutes`` minutes of the series."""
        tail = self.counts[-minutes:]
        return sum(tail) / (60 * len(tail)) if tail else 0.0


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Percentiles of a time in ms, read from log buckets (within ~19%);
    ``None`` when no job was measured."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def from_buckets(cls, buckets: Mapping[int, int]) -> Percentiles:
        count = sum(buckets.values())
        if not count:
            return cls(0, None, None, None)
        ordered = sorted(buckets.items())

        def at(q: float) -> float:
            rank = q * count
            seen = 0
            for bucket, n in ordered:
                seen += n
                if seen >= rank:
                    return _bucket_middle(bucket)
            return _bucket_middle(ordered[-1][0])

        return cls(count, at(0.50), at(0.95), at(0.99))


@dataclass(frozen=True, slots=True)
class Timings:
    """Wait time (ready to started, first attempts) and processing time (started
    to finished) of the jobs that finished in a window of minutes."""

    minutes: int
    wait: Percentiles
    processing: Percentiles


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """The replies of :meth:`QueueMetrics.pipe_metrics`: how many of the asked
    keys exist, the completed and failed totals (the kept minutes' sums), and
    each asked minute's timing histogram (field -> count, ``{}`` for none)."""

    existing: int
    completed: int
    failed: int
    histograms: list[dict[str, int]]


def sum_histograms(
    histograms: Iterable[Mapping[Any, Any]],
) -> tuple[dict[int, int], dict[int, int]]:
    """Minutes' timing histograms (fields ``w<bucket>`` and ``p<bucket>``) summed
    into wait and processing log buckets -> counts."""
    wait: dict[int, int] = {}
    processing: dict[int, int] = {}
    for histogram in histograms:
        for raw_field, raw_count in histogram.items():
            field = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
            target = wait if field[0] == "w" else processing
            bucket = int(field[1:])
            target[bucket] = target.get(bucket, 0) + int(raw_count)
    return wait, processing


def time_bucket(ms: float) -> int:
    """The log bucket of a time in whole ms: four per doubling (see the module
    docstring). Workers call it twice per job: small times come from a table."""
    whole = int(ms)
    if 0 <= whole < _SMALL_TIMES:
        return _SMALL_BUCKETS[whole]
    return int(math.log2(max(whole, 0) + 1) * _BUCKETS_PER_DOUBLING)


_SMALL_TIMES = 4096
_SMALL_BUCKETS = [int(math.log2(ms + 1) * _BUCKETS_PER_DOUBLING) for ms in range(_SMALL_TIMES)]


def _bucket_middle(bucket: int) -> float:
    low = 2 ** (bucket / _BUCKETS_PER_DOUBLING) - 1
    high = 2 ** ((bucket + 1) / _BUCKETS_PER_DOUBLING) - 1
    return round(math.sqrt(max(low, 0.5) * high) if low > 0 else high / 2, 3)


def _to_ms(field: str, value: datetime | int) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValidationError(field, "must be a timezone-aware datetime (UTC)", value)
        return int(value.timestamp() * 1000)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValidationError(field, f"expected an aware datetime or epoch ms, got {value!r}")


class QueueMetrics(QueueCore):
    """Metrics reads of a queue."""

    async def _redis_now_ms(self) -> int:
        return time_ms(await self.client.time())

    async def get_metrics(
        self,
        kind: MetricKind,
        start: datetime | int | None = None,
        end: datetime | int | None = None,
    ) -> MetricsSeries:
        """Jobs ``completed`` or ``failed`` (for good) per minute from ``start`` to
        ``end`` (aware datetimes or epoch ms; default: the last 60 minutes up to
        now). Minutes without jobs count 0; at most two weeks are kept."""
        if kind not in ("completed", "failed"):
            raise ValidationError("kind", f"must be 'completed' or 'failed', got {kind!r}")
        end_ms = await self._redis_now_ms() if end is None else _to_ms("end", end)
        start_ms = end_ms - 59 * MINUTE_MS if start is None else _to_ms("start", start)
        if start_ms > end_ms:
            raise ValidationError("start", "must not be after end")
        first, last = start_ms // MINUTE_MS, end_ms // MINUTE_MS
        first = max(first, last - KEPT_MINUTES + 1)
        minutes = [str(m) for m in range(first, last + 1)]
        values = await self.client.hmget(self.keys.metrics(kind), minutes)
        return MetricsSeries(
            kind,
            datetime.fromtimestamp(first * 60, UTC),
            [int(v) if v is not None else 0 for v in values],
        )

    async def get_timings(self, minutes: int = 5) -> Timings:
        """p50/p95/p99 of wait and processing time (ms) over the last ``minutes``
        minutes (this one included; at most three hours are kept)."""
        check_int("minutes", minutes, 1, KEPT_TIME_MINUTES)
        now = await self._redis_now_ms() // MINUTE_MS
        async with self.client.pipeline(transaction=False) as pipe:
            for minute in range(now - minutes + 1, now + 1):
                pipe.hgetall(self.keys.metrics_times(minute))
            replies = await pipe.execute()
        wait, processing = sum_histograms(replies)
        return Timings(
            minutes, Percentiles.from_buckets(wait), Percentiles.from_buckets(processing)
        )

    def pipe_metrics(self, pipe: Pipeline, exist: Sequence[int], minutes: Sequence[int]) -> int:
        """Queue on ``pipe`` (sent with the caller's other reads: no round trip of
        its own) an EXISTS of the completed counts and of the histograms of the
        minutes ``exist``, the completed and failed counts (HVALS), and the
        histograms of ``minutes`` (HGETALL each); returns how many replies they
        take, for :meth:`metrics_snapshot`."""
        k = self.keys
        pipe.exists(k.metrics("completed"), *(k.metrics_times(m) for m in exist))
        pipe.hvals(k.metrics("completed"))
        pipe.hvals(k.metrics("failed"))
        for minute in minutes:
            pipe.hgetall(k.metrics_times(minute))
        return 3 + len(minutes)

    @staticmethod
    def metrics_snapshot(replies: Sequence[Any]) -> MetricsSnapshot:
        """The replies of :meth:`pipe_metrics`, read."""
        existing, completed, failed, *histograms = replies
        return MetricsSnapshot(
            int(existing), sum(int(v) for v in completed), sum(int(v) for v in failed),
            [{(f.decode() if isinstance(f, bytes) else f): int(n) for f, n in h.items()}
             for h in histograms],
        )
