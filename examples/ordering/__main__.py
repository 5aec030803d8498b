"""``python -m examples.ordering``: the whole platform on this machine.

Starts a private Redis, PostgreSQL (``$DATABASE_URL`` or a private server) and
an HTTP receiver standing in for the WhatsApp API, applies the schema, adds a
few vendors, starts the worker process and serves the order endpoints with
conveyor's dashboard and the seed's ``/api/v1/queue/*`` API; prints the URLs.
Ctrl-C or SIGTERM stops it all (the worker finishes its running jobs);
``--seconds N`` stops by itself after N seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import asyncpg

from conveyor.embedded import free_port
from examples.support import Services, WorkerProcess, serve_app, wait_serving

from .db import apply_schema
from .tasks import JobType
from .web import create_web

VENDORS = [("vendor-ktm-1", "kathmandu", "+9779800000101"),
           ("vendor-ktm-2", "kathmandu", "+9779800000102"),
           ("vendor-pkr-1", "pokhara", "+9779800000201")]


def worker_process(env: dict[str, str], log: Path | None = None) -> WorkerProcess:
    """The worker (``python -m examples.ordering.worker``) as a child process,
    its log lines appended to ``log`` if given (else to its stderr)."""
    if log is not None:
        env = {**env, "ORDERING_LOG_FILE": str(log)}
    proc = WorkerProcess("examples.ordering.tasks:app", env)
    proc.args = [sys.executable, "-m", "examples.ordering.worker"]
    return proc


async def add_vendors(database_url: str) -> None:
    """The demo's vendors (kept if they exist)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany("INSERT INTO vendors (id, zone, phone) VALUES ($1, $2, $3) "
                               "ON CONFLICT DO NOTHING", VENDORS)
    finally:
        await conn.close()


async def run(port: int, seconds: float | None) -> None:
    """Run everything until a signal or ``seconds``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with Services(http=True) as services:
        await apply_schema(services.database_url)
        await add_vendors(services.database_url)
        worker = worker_process(services.env()).start()
        try:
            await wait_serving(services.redis_url, JobType.PAYMENT_REMINDERS.value, [worker])
            os.environ.update(services.env())  # the front's pool reads $DATABASE_URL
            server, task = await serve_app(create_web(services.redis_url), port)
            base = f"http://127.0.0.1:{port}"
            print(services.describe())
            print(f"dashboard:  {base}/")
            print(f"metrics:    {base}/api/v1/queue/metrics")
            print(f"health:     {base}/api/v1/queue/dashboard")
            print(f"orders:     curl -X POST {base}/api/v1/orders -H 'content-type: "
                  "application/json' -d '{\"customer_phone\": \"+9779800000000\", "
                  "\"zone\": \"kathmandu\", \"amount\": 1200}'", flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
            server.should_exit = True
            await task
        finally:
            code = await asyncio.to_thread(worker.stop)
            print(f"stopped (worker exit code {code})", flush=True)


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(prog="python -m examples.ordering",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="HTTP port (default: a free one)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    args = parser.parse_args()
    asyncio.run(run(args.port or free_port(), args.seconds))


if __name__ == "__main__":
    main()
