"""Everything CareCircle needs, in one command (``python -m examples.carecircle``):
a private Redis and PostgreSQL (or $DATABASE_URL), an SMTP sink and a stand-in
push provider, the schema, a worker process, the HTTP front and conveyor's
dashboard. Ctrl-C or SIGTERM stops it all: the worker gets SIGTERM and
finishes its running jobs, the servers stop, temp dirs are removed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from conveyor.embedded import free_port
from conveyor.web.app import create_app
from examples.support import Services, WorkerProcess, serve_app

from . import db
from .tasks import QUEUES, app, schedule_medication
from .web import create_web_app

__all__ = ["main", "worker_process"]


def worker_process(env: dict[str, str], queues: Sequence[str] = QUEUES,
                   log: Path | None = None) -> WorkerProcess:
    """A child process running ``python -m examples.carecircle.worker`` (per-queue
    concurrency and a failure listener, which ``conveyor worker`` cannot set)."""
    env = {**env, "CARECIRCLE_OWN_SESSION": "1"}
    if log is not None:  # the worker writes it (and closes it) itself
        env["CARECIRCLE_WORKER_LOG"] = str(log)
    process = WorkerProcess("examples.carecircle.tasks:app", env)
    process.args = [sys.executable, "-m", "examples.carecircle.worker",
                    "--queues", ",".join(queues)]
    return process


async def seed_demo() -> None:
    """Two users a world apart, each with a medication at 08:00 and 20:00 local time."""
    pool = await db.pool()
    if await pool.fetchval("SELECT count(*) FROM users"):
        return
    for name, tz in (("Ada", "Europe/Berlin"), ("Grace", "America/New_York")):
        user_id = await pool.fetchval(
            "INSERT INTO users (name, email, tz, push_token) VALUES ($1, $2, $3, $4)"
            " RETURNING id", name, f"{name.lower()}@example.com", tz, f"token-{name.lower()}")
        times = ["08:00", "20:00"]
        med_id = await pool.fetchval(
            "INSERT INTO medications (user_id, name, times) VALUES ($1, 'Metformin', $2)"
            " RETURNING id", user_id, times)
        await schedule_medication(med_id, user_id, times, tz)


async def run(seconds: float | None, port: int, dashboard_port: int) -> int:
    """Start everything, print the URLs, run until a signal or ``seconds``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with Services(smtp=True, http=True) as services:
        env = services.env()
        app.connection = services.redis_url
        os.environ.update(env)
        await db.apply_schema()
        worker = worker_process(env).start()
        front, front_task = await serve_app(create_web_app(), port)
        dash, dash_task = await serve_app(create_app(services.redis_url, queues=list(QUEUES)),
                                          dashboard_port)
        try:
            await seed_demo()
            print(services.describe())
            print(f"carecircle: http://127.0.0.1:{port}/docs")
            print(f"dashboard:  http://127.0.0.1:{dashboard_port}/", flush=True)
            with contextlib.suppress(TimeoutError):  # --seconds passed
                await asyncio.wait_for(stop.wait(), seconds)
        finally:
            code = await asyncio.to_thread(worker.stop)
            front.should_exit = dash.should_exit = True
            await asyncio.gather(front_task, dash_task, return_exceptions=True)
            await app.close()
            await db.close_pool()
        print(f"stopped (worker exit code {code})", flush=True)
        return 0 if code == 0 else 1


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m examples.carecircle [--port P] [--dashboard-port P] [--seconds N]``."""
    parser = argparse.ArgumentParser(prog="python -m examples.carecircle")
    parser.add_argument("--port", type=int, default=0, help="the HTTP front (default: free)")
    parser.add_argument("--dashboard-port", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    args = parser.parse_args(argv)
    code = asyncio.run(run(args.seconds, args.port or free_port(),
                           args.dashboard_port or free_port()))
    sys.exit(code)
