"""A queue's metrics over time, minute by minute, for the dashboard's charts:
jobs completed and failed, the failure rate, and p50/p95 of wait and
processing time (from the per-minute histograms workers keep for three hours,
:mod:`conveyor.metrics`). Reads only: one hash per minute, pipelined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._render import View
from ..metrics import KEPT_TIME_MINUTES, MINUTE_MS, Percentiles, sum_histograms
from ..options import check_int

if TYPE_CHECKING:
    from .inspector import Inspector

__all__ = ["MetricsSeries", "read_series"]


@dataclass(frozen=True, slots=True)
class MetricsSeries(View):
    """One point per minute, oldest first: {"at", "at_ms", "completed", "failed",
    "failure_rate" (0..1, None for a minute without finished jobs),
    "wait_p50_ms", "wait_p95_ms", "processing_p50_ms", "processing_p95_ms"
    (None for a minute without a measured job)}."""

    queue: str
    minutes: list[dict[str, Any]]


async def read_series(inspector: Inspector, name: str, minutes: int = 60) -> MetricsSeries:
    """The last ``minutes`` minutes (at most three hours) of queue ``name``."""
    check_int("minutes", minutes, 1, KEPT_TIME_MINUTES)
    counts = await inspector.throughput(name, minutes)  # QueueNotFoundError for none
    queue = inspector.queue(name)
    async with queue.client.pipeline(transaction=False) as pipe:
        for point in counts.minutes:
            pipe.hgetall(queue.keys.metrics_times(point["at_ms"] // MINUTE_MS))
        histograms = await pipe.execute()
    points = []
    for point, histogram in zip(counts.minutes, histograms, strict=True):
        wait, processing = (Percentiles.from_buckets(b) for b in sum_histograms([histogram]))
        finished = point["completed"] + point["failed"]
        points.append({
            **point,
            "failure_rate": round(point["failed"] / finished, 4) if finished else None,
            "wait_p50_ms": wait.p50, "wait_p95_ms": wait.p95,
            "processing_p50_ms": processing.p50, "processing_p95_ms": processing.p95,
        })
    return MetricsSeries(name, points)
