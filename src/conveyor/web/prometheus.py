"""Prometheus metrics of conveyor queues, read from Redis at scrape time.

Served at ``/metrics`` by :func:`conveyor.web.create_app`, or on a port of its
own by :func:`start_metrics_server` (say, in a worker process)::

    conveyor_jobs{queue,state}                 gauge: jobs per state now
    conveyor_jobs_completed_total{queue}       counter: sum of the per-minute counts
    conveyor_jobs_failed_total{queue}          (kept two weeks, so it may dip)
    conveyor_job_wait_seconds{queue}           histogram over the last 3 hours
    conveyor_job_processing_seconds{queue}     histogram over the last 3 hours
    conveyor_workers{queue}                    gauge: live workers
    conveyor_queue_paused{queue}               gauge: 1 while paused

One scrape costs Redis 2 commands, then per queue one pipeline of 16 + r
commands, where r is the number of minutes of timings this inspector has not
read before (180 at its first scrape, then 1 within a minute of the previous
scrape, 2 a minute apart), plus one more pipeline for a queue with workers (1
EXISTS) or groups (1 LLEN per group holding jobs). No job, worker or schedule
is read one by one: the cost does not grow with them (see
:mod:`conveyor.web._scrape`; tests/test_prometheus_cost.py counts it).

The port of :func:`start_metrics_server` has no authentication: it listens on
127.0.0.1 unless ``host`` says otherwise (docs/guides/metrics.md, "Prometheus", shows how
to let a Prometheus on another host in).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from redis.asyncio import Redis

from ..connection import Connection
from ..inspection import Inspector
from ..keys import STATES
from ..options import validate_queue_name
from ._scrape import read_queues

__all__ = ["ConveyorCollector", "MetricsServer", "collect_metrics", "render_metrics",
           "start_metrics_server"]

T = TypeVar("T")

#: Histogram bounds: every doubling of ms (2^k - 1 ms), k = 1..24 (about 4.7 hours).
#: Each is a bucket boundary of metrics:times, so the counts are exact.
_DOUBLINGS = range(1, 25)
_BUCKETS_PER_DOUBLING = 4


def _histogram(buckets: dict[int, int]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative (le seconds, count) pairs and the estimated sum in seconds."""
    out = []
    for k in _DOUBLINGS:
        below = sum(n for b, n in buckets.items() if b < _BUCKETS_PER_DOUBLING * k)
        out.append((repr((2**k - 1) / 1000), float(below)))
    out.append(("+Inf", float(sum(buckets.values()))))
    return out, sum(_bucket_middle(b) * n for b, n in buckets.items()) / 1000


def _bucket_middle(bucket: int) -> float:
    """The geometric middle (ms) of log bucket ``bucket``: the sum is an estimate."""
    low = 2 ** (bucket / _BUCKETS_PER_DOUBLING) - 1
    high = 2 ** ((bucket + 1) / _BUCKETS_PER_DOUBLING) - 1
    return math.sqrt(max(low, 0.5) * high) if low > 0 else high / 2


async def collect_metrics(inspector: Inspector) -> list[Metric]:
    """The metric families of every queue the inspector knows."""
    samples = await read_queues(inspector)
    jobs = GaugeMetricFamily("conveyor_jobs", "Jobs of the queue in each state now.",
                             labels=["queue", "state"])
    completed = CounterMetricFamily(
        "conveyor_jobs_completed", "Jobs completed: the sum of the per-minute counts, "
        "which are kept two weeks (older minutes drop out).", labels=["queue"])
    failed = CounterMetricFamily(
        "conveyor_jobs_failed", "Jobs failed for good: the sum of the per-minute counts, "
        "which are kept two weeks (older minutes drop out).", labels=["queue"])
    wait = HistogramMetricFamily(
        "conveyor_job_wait_seconds", "Time from ready to started (first attempts) of the "
        "jobs finished in the last 3 hours (a sliding window).", labels=["queue"])
    processing = HistogramMetricFamily(
        "conveyor_job_processing_seconds", "Time from started to finished of the jobs "
        "finished in the last 3 hours (a sliding window).", labels=["queue"])
    workers = GaugeMetricFamily("conveyor_workers", "Live workers of the queue.",
                                labels=["queue"])
    paused = GaugeMetricFamily("conveyor_queue_paused", "1 while the queue is paused.",
                               labels=["queue"])
    for s in samples:
        for state in STATES:
            jobs.add_metric([s.name, state], s.counts.get(state, 0))
        completed.add_metric([s.name], s.completed)
        failed.add_metric([s.name], s.failed)
        for family, buckets in ((wait, s.wait), (processing, s.processing)):
            pairs, total = _histogram(buckets)
            family.add_metric([s.name], pairs, total)
        workers.add_metric([s.name], s.workers)
        paused.add_metric([s.name], int(s.paused))
    return [jobs, completed, failed, wait, processing, workers, paused]


class _Families:
    """A collector that hands out families gathered beforehand."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return iter(self.families)


async def render_metrics(inspector: Inspector) -> bytes:
    """The Prometheus text exposition of every queue the inspector knows."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(await collect_metrics(inspector)))
    return generate_latest(registry)


class ConveyorCollector:
    """A prometheus_client collector reading conveyor's queues at each scrape.

    Scrapes come from another thread (the HTTP server's), so the reads run on
    an event loop: the one given (needed for a ``redis.asyncio.Redis``
    connection, which belongs to its loop), else a private loop in a thread of
    its own, with one client kept between scrapes.
    """

    def __init__(
        self,
        connection: Connection = None,
        *,
        prefix: str = "conveyor",
        queues: Sequence[str] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        timeout: float = 10.0,
    ) -> None:
        if isinstance(connection, Redis) and loop is None:
            raise ValueError("a redis.asyncio.Redis connection needs the loop it belongs to")
        self._connection = connection
        self._prefix = prefix
        # Validate now rather than at a scrape.
        self._queues = [validate_queue_name(name) for name in queues or ()]
        self._timeout = timeout
        self._own_loop = loop is None
        self._loop = loop or asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        if self._own_loop:
            self._thread = threading.Thread(target=self._loop.run_forever,
                                            name="conveyor-metrics", daemon=True)
            self._thread.start()
        self._inspector: Inspector | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout)

    async def _collect(self) -> list[Metric]:
        if self._inspector is None:
            self._inspector = Inspector(self._connection, prefix=self._prefix,
                                        queues=self._queues)
        return await collect_metrics(self._inspector)

    def collect(self) -> Iterable[Metric]:
        """Read every queue now (called by the registry at each scrape)."""
        return iter(self._run(self._collect()))

    def close(self) -> None:
        """Close the client and stop the private loop (if any)."""
        inspector, self._inspector = self._inspector, None
        if inspector is not None and not self._loop.is_closed():
            self._run(inspector.close())
        if self._own_loop and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self._timeout)
            self._loop.close()


@dataclass
class MetricsServer:
    """A running metrics endpoint: ``http://<host>:<port>/metrics``."""

    host: str
    port: int
    collector: ConveyorCollector
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and close the collector's connection."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self.collector.close()


def start_metrics_server(
    port: int,
    connection: Connection = None,
    queues: Sequence[str] | None = None,
    *,
    prefix: str = "conveyor",
    host: str = "127.0.0.1",
) -> MetricsServer:
    """Serve the queues' metrics on ``host:port`` (``port`` 0: any free port) from a
    thread, for Prometheus to scrape; for a worker process (``conveyor worker
    --metrics-port``). Only counts and timings are exposed, no action, and
    without a token: the default ``host`` is loopback, so only this machine can
    scrape; ``host="0.0.0.0"`` (or an interface's address) widens that, for a
    network where a firewall or a proxy decides who may connect. Queues
    are those of the registry plus ``queues``. Called from inside a running
    event loop with a ``redis.asyncio.Redis`` connection, scrapes run on that
    loop; otherwise on a private one. ``close()`` the result to stop."""
    loop = None
    if isinstance(connection, Redis):
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ValueError("start_metrics_server with a redis.asyncio.Redis connection "
                             "must be called from its event loop; pass a URL instead") from None
    collector = ConveyorCollector(connection, prefix=prefix, queues=queues, loop=loop)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except BaseException:
        collector.close()
        raise
    return MetricsServer(host, int(server.server_address[1]), collector, server, thread)
