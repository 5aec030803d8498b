"""``python -m examples.auction.worker``: the auction's workers, without the server.

The seed's "workers only" process (``node src/workers/standalone.js``): one
worker per queue with that queue's concurrency and limiter, so run as many of
these processes as the load needs. SIGTERM or SIGINT lets running jobs finish,
then exits 0. Reads ``$CONVEYOR_REDIS_URL`` and ``$DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .tasks import app, build_workers, resources

if TYPE_CHECKING:
    from examples.support import WorkerProcess

__all__ = ["main", "run_workers", "worker_process"]


async def run_workers() -> None:
    """Run the three workers until SIGTERM/SIGINT."""
    workers = build_workers()
    try:
        await asyncio.gather(*(worker.run() for worker in workers))
    finally:
        await asyncio.gather(*(worker.close() for worker in workers), return_exceptions=True)
        await resources.close()
        await app.close()


def worker_process(env: dict[str, str], log: Path | None = None) -> WorkerProcess:
    """This entry point as a child process (not yet started) that a test can
    SIGKILL and start again: ``conveyor worker`` gives every queue one
    concurrency, while the seed gives each queue its own."""
    from examples.support import WorkerProcess

    process = WorkerProcess("examples.auction.tasks:app", env, log=log)
    process.args = [sys.executable, "-m", "examples.auction.worker"]
    return process


def main() -> None:
    """Log as the seed's worker events do, then run the workers."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    logging.getLogger("conveyor").setLevel(logging.WARNING)
    asyncio.run(run_workers())


if __name__ == "__main__":
    main()
