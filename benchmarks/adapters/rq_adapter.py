"""RQ's benchmark adapter (runs in benchmarks/.venvs/rq).

RQ runs one job at a time per worker process: it has no in-process concurrency, so the io
scenario runs with ``--processes`` worker processes (concurrency 1 each) and says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import redis
from common import LATENCY_KEY, QUEUE, Adapter, main, report
from rq import Queue

NAME = "rq"
REQUIREMENTS = ["rq==3.0.0", "redis==8.1.0", "hiredis==3.5.0"]
SETTINGS = ("rq worker --worker-class rq.worker.SimpleWorker (no fork per job, RQ's documented "
            "choice for jobs of single-digit ms) --with-scheduler, one job at a time per process "
            "(no in-process concurrency), default result_ttl 500 s, hiredis")

HERE = Path(__file__).resolve().parent
MODULE = Path(__file__).stem
_client: redis.Redis | None = None


def noop(i: int) -> None:
    return None


def io(i: int) -> None:
    time.sleep(0.01)


def latency(i: int) -> None:
    global _client
    t = time.time()
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_URL"])
    _client.rpush(LATENCY_KEY, t)


class RQAdapter(Adapter):
    name = NAME

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.queue = Queue(QUEUE, connection=self.redis)
        self._keys = (self.queue.key, self.queue.intermediate_queue_key,
                      f"rq:wip:{QUEUE}", f"rq:scheduled:{QUEUE}")

    def enqueue_one(self, kind: str, i: int, delay_s: float = 0.0) -> None:
        func = f"{MODULE}.{kind}"
        if delay_s > 0:
            self.queue.enqueue_in(timedelta(seconds=delay_s), func, i)
        else:
            self.queue.enqueue(func, i)

    def enqueue_bulk(self, kind: str, n: int, delay_s: float = 0.0) -> bool:
        if delay_s > 0:
            return False
        func = f"{MODULE}.{kind}"
        for start in range(0, n, 1000):
            self.queue.enqueue_many(
                [Queue.prepare_data(func, (i,)) for i in range(start, min(start + 1000, n))]
            )
        return True

    def start_workers(
        self, kind: str, processes: int, concurrency: int
    ) -> list[subprocess.Popen[bytes]]:
        rq = str(Path(sys.executable).parent / "rq")
        env = {**os.environ, "BENCH_URL": self.url, "PYTHONPATH": str(HERE)}
        return [
            subprocess.Popen([rq, "worker", "--url", self.url, "--worker-class",
                              "rq.worker.SimpleWorker", "--with-scheduler", "--quiet", QUEUE],
                             env=env, cwd=HERE, stdout=subprocess.DEVNULL)
            for _ in range(processes)
        ]

    def remaining(self) -> int:
        # waiting list, the list a worker moves a job to while taking it, started and scheduled
        # registries (a job moves between them inside MULTI/EXEC transactions)
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(self._keys[0])
        pipe.llen(self._keys[1])
        pipe.zcard(self._keys[2])
        pipe.zcard(self._keys[3])
        return sum(pipe.execute())

    def scenario_io(self, n: int, processes: int, concurrency: int) -> None:
        report("io", unit="jobs/s", **self._drain("io", n, processes, 1),
               concurrency=processes,
               note=f"RQ has no in-process concurrency: {processes} worker process(es), "
                    "one job at a time each")


if __name__ == "__main__":
    main(RQAdapter)
