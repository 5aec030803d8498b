"""``python -m examples.shop``: the whole shop on this machine.

Starts a private Redis, PostgreSQL (``$DATABASE_URL`` if set), an SMTP sink,
an HTTP receiver standing in for the payment providers, the ERP and the
marketplace, two worker processes (e-mail; everything else), and the shop's
HTTP front with conveyor's dashboard at ``/jobs/``. Ctrl-C or SIGTERM stops
it all (workers finish their running jobs); ``--seconds N`` stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import tempfile
from pathlib import Path

from conveyor.embedded import free_port
from examples.support import Services, WorkerProcess, serve_app

from . import store, tasks
from .events import follow
from .web import make_app

PRODUCTS = [("TSHIRT", "Cotton t-shirt", 1_000, 50), ("PHONE", "Phone", 30_000, 10),
            ("LAPTOP", "Laptop", 60_000, 5)]


async def seed_products() -> None:
    """A small catalogue, so the front has something to sell."""
    await (await store.pool()).executemany(
        "INSERT INTO products (sku, name, price, stock) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING", PRODUCTS)


def start_workers(env: dict[str, str], log_dir: Path | None = None) -> list[WorkerProcess]:
    """The e-mail worker and the worker of every other queue, as processes."""
    others = [q for q in tasks.app.queue_names() if q != tasks.EMAIL]
    return [
        WorkerProcess("examples.shop.tasks:app", env, queues=[tasks.EMAIL],
                      log=log_dir / "email-worker.log" if log_dir else None).start(),
        WorkerProcess("examples.shop.tasks:app", env, queues=others,
                      log=log_dir / "worker.log" if log_dir else None).start(),
    ]


async def main(seconds: float | None, port: int) -> int:
    """Run everything until a signal (or ``seconds``), then stop it all."""
    with Services(smtp=True, http=True) as services, \
            tempfile.TemporaryDirectory(prefix="shop-") as logs:
        env = services.env()
        os.environ.update(env)
        await store.apply_schema()
        await seed_products()
        workers = start_workers(env, Path(logs))
        server, task = await serve_app(make_app(services.redis_url), port)
        events = asyncio.create_task(follow(tasks.app.queue_names(), services.redis_url,
                                            lambda line: print(line, flush=True)))
        print(f"shop:       http://127.0.0.1:{port}/docs", flush=True)
        print(f"dashboard:  http://127.0.0.1:{port}/jobs/", flush=True)
        print(services.describe(), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        print("stopping", flush=True)
        events.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await events
        server.should_exit = True
        await task
        codes = await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))
        await store.close()
        return 0 if all(code == 0 for code in codes) else 1


def cli() -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(prog="python -m examples.shop", description=__doc__)
    parser.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    parser.add_argument("--port", type=int, default=0, help="HTTP port (default: a free one)")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.seconds, args.port or free_port())))


if __name__ == "__main__":
    cli()
