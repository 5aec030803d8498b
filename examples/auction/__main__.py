"""``python -m examples.auction``: the whole auction application in one command.

Starts a private Redis and PostgreSQL (``$DATABASE_URL`` when set), applies
the schema, starts the worker process(es), serves the auction front and
conveyor's dashboard, opens two demo auctions and prints the URLs. Ctrl-C or
SIGTERM stops it all: the workers get SIGTERM and finish their jobs, the
servers stop and the temporary files go.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
from pathlib import Path

from conveyor.embedded import free_port
from conveyor.web.app import create_app
from examples.support import Services, serve_app, wait_serving

from . import db
from .tasks import QUEUES
from .web import AuctionService, CreateAuction, create_web_app
from .worker import worker_process


async def main(port: int, dashboard_port: int, seconds: float | None, processes: int) -> int:
    """Run until a signal (or ``seconds``); the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with Services() as services, tempfile.TemporaryDirectory(prefix="auction-") as tmp:
        pool = await db.connect(services.database_url, max_size=2)
        await db.apply_schema(pool)
        await pool.close()
        workers = [worker_process(services.env(), log=Path(tmp) / f"worker-{i}.log").start()
                   for i in range(processes)]
        await wait_serving(services.redis_url, QUEUES[0], workers)
        front = create_web_app(services.redis_url, services.database_url)
        servers = [await serve_app(front, port or free_port()),
                   await serve_app(create_app(services.redis_url, queues=list(QUEUES)),
                                   dashboard_port or free_port())]
        try:
            service: AuctionService = front.state.service
            for title in ("Vintage camera", "Signed first edition"):
                await service.create_auction(CreateAuction(
                    title=title, startingPrice="100.00", minIncrement="5.00",
                    durationSeconds=600))
            app_url = f"http://127.0.0.1:{servers[0][0].config.port}/"
            print(f"auction app: {app_url}")
            print(f"websocket:   ws://127.0.0.1:{servers[0][0].config.port}/ws/auctions/<id>")
            print(f"dashboard:   http://127.0.0.1:{servers[1][0].config.port}/")
            print(services.describe())
            print(f"workers:     {processes} process(es), logs in {tmp}")
            print("Ctrl-C stops.", flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
        finally:
            codes = [await asyncio.to_thread(w.stop) for w in workers]
            for server, task in servers:
                server.should_exit = True
                await task
    print(f"stopped (workers exited with {codes})", flush=True)
    return 0 if all(code == 0 for code in codes) else 1


def cli() -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(prog="python -m examples.auction", description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="the auction front (0: free)")
    parser.add_argument("--dashboard-port", type=int, default=0,
                        help="conveyor's dashboard (0: a free port)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--seconds", type=float, default=None, help="stop by itself after N s")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.port, args.dashboard_port, args.seconds, args.workers)))


if __name__ == "__main__":
    cli()
