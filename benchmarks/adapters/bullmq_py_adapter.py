"""BullMQ for Python (PyPI ``bullmq``), run in its own virtualenv.

BullMQ keeps a queue ``Q`` under ``bull:Q:*``: ``wait`` and ``active`` lists, ``delayed``
and ``prioritized`` sorted sets, finished jobs in the ``completed``/``failed`` sorted sets
and every job as a hash ``bull:Q:<id>``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

import redis.asyncio as aioredis
from bullmq import Job, Queue, Worker
from common import LATENCY_KEY, QUEUE, Adapter, main

NAME = "bullmq-py"
# redis-py 7, not 8: redis-py 8 reads with a 5 s socket timeout by default, and bullmq 3.4.4's
# worker blocks on BZPOPMIN for up to 10 s, so with 8.x an idle or delayed-job wait times out,
# reconnects and re-blocks forever (delayed jobs are never promoted).
REQUIREMENTS = ["bullmq==3.4.4", "redis==7.4.1", "hiredis==3.5.0"]
SETTINGS = ("one bullmq Worker per process, concurrency = the scenario's (50; 100 for io), "
            "async processor, default retention (removeOnComplete/removeOnFail unset: every "
            "finished job kept), default drainDelay 5 s, addBulk in chunks of 1,000, hiredis")

PREFIX = "bull"


class BullMQPyAdapter(Adapter):
    name = NAME

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.queue = Queue(QUEUE, {"connection": url, "prefix": PREFIX})
        base = f"{PREFIX}:{QUEUE}:"
        # Read in the direction jobs flow (delayed -> prioritized/wait -> active): a job that
        # moves between two reads is then seen twice, never missed.
        self._zsets = (base + "delayed", base + "prioritized")
        self._lists = (base + "wait", base + "active")

    def _opts(self, delay_s: float) -> dict[str, Any]:
        return {"delay": int(delay_s * 1000)} if delay_s > 0 else {}

    def enqueue_one(self, kind: str, i: int, delay_s: float = 0.0) -> None:
        self.loop.run_until_complete(self.queue.add(kind, {"i": i}, self._opts(delay_s)))

    def enqueue_bulk(self, kind: str, n: int, delay_s: float = 0.0) -> bool:
        opts = self._opts(delay_s)

        async def add_all() -> None:
            for start in range(0, n, 1000):
                await self.queue.addBulk(
                    [{"name": kind, "data": {"i": i}, "opts": opts}
                     for i in range(start, min(start + 1000, n))]
                )

        self.loop.run_until_complete(add_all())
        return True

    def start_workers(
        self, kind: str, processes: int, concurrency: int
    ) -> list[subprocess.Popen[bytes]]:
        return [
            subprocess.Popen([sys.executable, __file__, "worker", "--url", self.url,
                              "--concurrency", str(concurrency)])
            for _ in range(processes)
        ]

    def remaining(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for key in self._zsets:
            pipe.zcard(key)
        for key in self._lists:
            pipe.llen(key)
        return sum(pipe.execute())

    def close(self) -> None:
        self.loop.run_until_complete(self.queue.close())
        self.loop.close()


async def run_worker(url: str, concurrency: int) -> None:
    client = aioredis.Redis.from_url(url)

    async def process(job: Job, token: str) -> Any:
        if job.name == "io":
            await asyncio.sleep(0.01)
        elif job.name == "latency":
            await client.rpush(LATENCY_KEY, time.time())
        return None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(QUEUE, process, {"connection": url, "prefix": PREFIX,
                                     "concurrency": concurrency})
    await stop.wait()
    await worker.close()
    await client.aclose()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--url", required=True)
        parser.add_argument("--concurrency", type=int, default=50)
        args = parser.parse_args(sys.argv[2:])
        asyncio.run(run_worker(args.url, args.concurrency))
    else:
        main(BullMQPyAdapter)
