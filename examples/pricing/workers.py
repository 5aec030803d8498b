"""The pricing workers (the seed's ``lib/queue/workers``): one conveyor worker
per queue with the seed's concurrency (ingestion 3, calculation 2, webhooks 5,
reports 2), the seed's retry delays and a rate limit on webhooks.

``python -m examples.pricing.workers`` runs them until SIGTERM/SIGINT (running
jobs finish first), as ``npm run workers`` does; ``$PRICING_METRICS_PORT``
serves their Prometheus metrics, with the process's memory, for the alerts.

Environment: ``PRICING_WEBHOOK_LIMIT`` (``max/duration_ms``, default
``100/60000``: 100 webhooks a minute across all workers), ``PRICING_LOCK_MS``
and ``PRICING_STALLED_MS`` (how soon a dead worker's jobs run again; default
30 s each).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

from conveyor import Job, Worker

from . import db
from .tasks import QUEUES, app, backoff

__all__ = ["CONCURRENCY", "get_worker_status", "main", "start_workers", "stop_workers",
           "worker_options"]

log = logging.getLogger("examples.pricing.workers")

CONCURRENCY = {"ingestion": 3, "calculation": 2, "webhooks": 5, "reports": 2}

_workers: dict[str, Worker] = {}
_runs: dict[str, asyncio.Task[None]] = {}


def _limiter(spec: str) -> dict[str, int]:
    most, _, duration = spec.partition("/")
    return {"max": int(most), "duration": int(duration)}


def worker_options(queue: str) -> dict[str, Any]:
    """The options of ``queue``'s worker (see the module's docstring)."""
    options: dict[str, Any] = {
        "concurrency": CONCURRENCY[queue],
        "backoff_strategy": backoff,
        "lock_duration": int(os.environ.get("PRICING_LOCK_MS", "30000")),
        "stalled_interval": int(os.environ.get("PRICING_STALLED_MS", "30000")),
    }
    if queue == "webhooks":
        options["limiter"] = _limiter(os.environ.get("PRICING_WEBHOOK_LIMIT", "100/60000"))
    return options


def _log_events(worker: Worker, queue: str) -> None:
    """The seed's log lines: Processing, Completed (with the run time), Job failed."""
    label = f"[{queue.capitalize()} Worker]"
    started: dict[str, float] = {}

    def active(job: Job) -> None:
        started[job.id] = time.monotonic()
        log.info("%s Processing: %s", label, job.id)

    def completed(job: Job, result: Any) -> None:
        seconds = time.monotonic() - started.pop(job.id, time.monotonic())
        log.info("%s Completed: %s (%.1fs)", label, job.id, seconds)

    def failed(job: Job, error: Any) -> None:
        started.pop(job.id, None)
        log.warning("[Worker] Job failed: %s (%s)", job.id, error)

    worker.on("active", active)
    worker.on("completed", completed)
    worker.on("failed", failed)


async def start_workers(queues: tuple[str, ...] = QUEUES) -> list[Worker]:
    """Start a worker for each queue on this event loop; :func:`stop_workers` stops them."""
    for queue in queues:
        if queue in _workers:
            continue
        worker = app.worker(queue, handle_signals=False, **worker_options(queue))
        _log_events(worker, queue)
        _workers[queue] = worker
        _runs[queue] = asyncio.create_task(worker.run(), name=f"pricing-{queue}")
    return list(_workers.values())


async def stop_workers(timeout: float | None = None) -> None:
    """Stop taking jobs, let running ones finish (after ``timeout`` s they go
    back to their queues), and close the connections."""
    workers, runs = list(_workers.values()), list(_runs.values())
    _workers.clear()
    _runs.clear()
    await asyncio.gather(*(worker.close(timeout) for worker in workers))
    await asyncio.gather(*runs, return_exceptions=True)
    await app.close()
    await db.close_pool()


async def get_worker_status() -> list[dict[str, Any]]:
    """``[{"name", "isRunning", "isPaused"}, ...]`` per queue, from Redis, so
    any process can ask: running while a worker of the queue has a live
    heartbeat (one that was killed drops out within 45 s), paused while the
    queue is paused."""
    status = []
    for queue in QUEUES:
        q = app.queue(queue)
        status.append({"name": queue, "isRunning": bool(await q.get_workers()),
                       "isPaused": await q.is_paused()})
    return status


def _serve_metrics(port: int) -> Any:
    """Queue metrics plus this process's memory (``process_resident_memory_bytes``)."""
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    from conveyor.web.prometheus import ConveyorCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConveyorCollector(os.environ.get("CONVEYOR_REDIS_URL"),
                                        queues=list(QUEUES)))
    ProcessCollector(registry=registry)
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    return server


async def main() -> None:
    """Run the workers until SIGTERM or SIGINT (the seed's graceful shutdown)."""
    metrics = None
    if port := os.environ.get("PRICING_METRICS_PORT"):
        metrics = _serve_metrics(int(port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await start_workers()
    log.info("workers started: %s", ", ".join(
        f"{queue} (concurrency {n})" for queue, n in CONCURRENCY.items()))
    await stop.wait()
    log.info("Shutting down workers...")
    await stop_workers()
    if metrics is not None:
        metrics.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per webhook request
    asyncio.run(main())
