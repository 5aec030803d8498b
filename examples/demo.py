"""conveyor demo: a private Redis, a worker and a producer, jobs flowing.

    make demo                    # runs until Ctrl-C
    python examples/demo.py --seconds 10

Starts its own redis-server on a free port (nothing to install besides the
package), then produces a mix of jobs: quick ones, slow ones that report
progress and write logs, delayed ones, prioritized ones and flaky ones that
fail and retry with exponential backoff. Every two seconds it prints the
queue's counts. Ctrl-C stops the producer, lets running jobs finish and shuts
everything down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
from typing import Any

from conveyor import Job, Queue, QueueEvents, Worker
from conveyor.embedded import RedisServer

QUEUE = "demo"


async def process(job: Job) -> Any:
    if job.name == "report":
        for step in range(1, 6):
            await asyncio.sleep(0.1)
            await job.update_progress(step * 20)
            await job.log(f"rendered section {step} of 5")
        return {"pages": 5}
    if job.name == "webhook" and random.random() < 0.5:
        raise ConnectionError("endpoint answered 503")
    await asyncio.sleep(random.uniform(0.005, 0.05))
    return {"sent_to": job.data.get("to")}


async def produce(queue: Queue, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        await queue.add("email", {"to": f"user{n}@example.com"})
        if n % 3 == 0:
            await queue.add("webhook", {"url": f"https://example.com/hook/{n}"}, attempts=4,
                            backoff={"type": "exponential", "delay": 200})
        if n % 5 == 0:
            await queue.add("report", {"month": n % 12 + 1}, priority=1)
        if n % 7 == 0:
            await queue.add("reminder", {"n": n}, delay=3_000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def watch_events(url: str, tally: dict[str, int]) -> None:
    async for event in QueueEvents(QUEUE, connection=url):
        tally[event["event"]] = tally.get(event["event"], 0) + 1


async def main(seconds: float | None) -> None:
    server = RedisServer()
    server.start()
    print(f"private redis-server on {server.url}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    queue = Queue(QUEUE, server.url)
    worker = Worker(QUEUE, process, connection=server.url, concurrency=20)
    worker_task = asyncio.create_task(worker.run())
    tally: dict[str, int] = {}
    tasks = [asyncio.create_task(produce(queue, stop)),
             asyncio.create_task(watch_events(server.url, tally))]
    print("producing jobs; Ctrl-C to stop")
    try:
        waited = 0.0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
            waited += 2.0
            counts = await queue.get_job_counts()
            line = "  ".join(f"{k}={v}" for k, v in counts.items())
            print(f"{line}  | events: completed={tally.get('completed', 0)} "
                  f"retrying={tally.get('retrying', 0)} failed={tally.get('failed', 0)}")
            if seconds is not None and waited >= seconds:
                stop.set()
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await worker.close(timeout=5)
        await worker_task
        await queue.close()
        server.close()
        print("stopped cleanly")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main(parser.parse_args().seconds))
