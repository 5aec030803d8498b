"""``python -m examples.pricing``: the whole pricing platform in one command.

Starts a private Redis and PostgreSQL (or ``$DATABASE_URL``), a local HTTP
receiver standing for the tenants' webhook endpoints, the schema, the workers
(``python -m examples.pricing.workers`` as a child process), the HTTP front
with conveyor's dashboard, and adds a few demo jobs. Ctrl-C or SIGTERM (or
``--seconds N``) stops it all: the workers finish their jobs, the servers
stop and their temp dirs go.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg

from conveyor.embedded import free_port
from examples.support import Services, WorkerProcess, serve_app, wait_serving
from examples.support.running import ROOT

from .db import apply_schema
from .queue import (
    clean_old_jobs,
    enqueue_calculation,
    enqueue_ingestion,
    enqueue_report,
    get_all_queue_metrics,
    queue_depth_warnings,
)
from .tasks import app
from .web import create_web_app

__all__ = ["PricingWorkers", "add_tenant", "main", "workers_process"]

log = logging.getLogger("examples.pricing")


class PricingWorkers(WorkerProcess):
    """``python -m examples.pricing.workers`` as a child process that can be
    SIGKILLed and started again. (``conveyor worker`` would give every queue
    the same concurrency; the workers module gives each its own.)"""

    def __init__(self, env: dict[str, str], log_file: Path | None = None, *,
                 quiet: bool = True) -> None:
        super().__init__("examples.pricing.tasks:app", env, log=log_file)
        self.args = [sys.executable, "-m", "examples.pricing.workers"]
        self.quiet = quiet

    def start(self) -> PricingWorkers:
        # As WorkerProcess.start, but the log file is closed here once the child has it.
        quiet = subprocess.DEVNULL if self.quiet else None  # None: this terminal
        with (open(self.log, "ab") if self.log else contextlib.nullcontext(quiet)) as out:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=out,
                                         stderr=out, stdin=subprocess.DEVNULL)
        return self


def workers_process(env: dict[str, str], log_file: Path | None = None) -> PricingWorkers:
    """The pricing workers' process (see :class:`PricingWorkers`), not started."""
    return PricingWorkers(env, log_file)


async def add_tenant(database_url: str, tenant_id: str, endpoint: str, secret: str) -> None:
    """Register a tenant's webhook endpoint and signing secret."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO webhook_endpoints (tenant_id, url, secret) VALUES ($1, $2, $3) "
            "ON CONFLICT (tenant_id) DO UPDATE SET url = $2, secret = $3",
            tenant_id, endpoint, secret)
    finally:
        await conn.close()


async def _demo(database_url: str, receiver: str) -> None:
    """A tenant, a WTI ingestion, a calculation batch and its reports."""
    await add_tenant(database_url, "tenant-123", f"{receiver}/webhooks/tenant-123",
                     secrets.token_hex(16))
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO calc_batches (tenant_id, batch_id, series_code, as_of_date) "
            "VALUES ('tenant-123', 'batch-456', 'WTI', '2024-01-15') ON CONFLICT DO NOTHING")
        await conn.executemany(
            "INSERT INTO calc_items VALUES ('tenant-123', 'batch-456', $1, $2, 70) "
            "ON CONFLICT DO NOTHING", [(f"contract-{n}", 100 + n) for n in range(5)])
    finally:
        await conn.close()
    await enqueue_ingestion(tenant_id="tenant-123", series_code="WTI", as_of_date="2024-01-15",
                            version_tag="final", source="csv",
                            data=[{"date": "2024-01-15", "value": 72.68}])
    # Later than the ingestion; were it first, it would fail and retry 5 s later.
    await enqueue_calculation(tenant_id="tenant-123", batch_id="batch-456", priority=100,
                              delay=2000)
    for fmt in ("pdf", "csv"):
        await enqueue_report(tenant_id="tenant-123", report_type="price-math",
                             batch_id="batch-456", format=fmt, user_id="user-789",
                             delay=5000)


async def _monitor() -> None:
    """The seed's best practices 4 and 5: check queue depth each minute, clean old jobs."""
    while True:
        for warning in queue_depth_warnings(await get_all_queue_metrics()):
            log.warning(warning)
        await clean_old_jobs()
        await asyncio.sleep(60)


async def run(port: int, seconds: float | None) -> int:
    """Start everything, print the URLs, run until a signal or ``seconds``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with Services(http=True) as services:
        token = os.environ.get("PRICING_API_TOKEN") or secrets.token_urlsafe(16)
        env = {**services.env(), "PRICING_API_TOKEN": token,
               "PRICING_STEP_MS": os.environ.get("PRICING_STEP_MS", "500")}
        os.environ.update(env)  # this process's app and dashboard read them too
        await apply_schema(services.database_url)
        workers = PricingWorkers(env, quiet=False).start()
        await wait_serving(services.redis_url, "ingestion", [workers])
        server, serving = await serve_app(create_web_app(token), port)
        monitor = asyncio.create_task(_monitor())
        try:
            assert services.http is not None
            await _demo(services.database_url, services.http.url)
            base = f"http://127.0.0.1:{port}"
            print(services.describe())
            print(f"api:        {base}/api  (Authorization: Bearer {token})")
            print(f"metrics:    {base}/api/jobs/metrics")
            print(f"dashboard:  {base}/dashboard/", flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
        finally:
            monitor.cancel()
            code = workers.stop()
            server.should_exit = True
            await serving
            await app.close()
    print(f"stopped (workers exited {code})", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(prog="python -m examples.pricing", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="HTTP port (default: a free one)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return asyncio.run(run(args.port or free_port(), args.seconds))


if __name__ == "__main__":
    sys.exit(main())
