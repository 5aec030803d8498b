"""Celery's benchmark adapter, Redis broker (runs in benchmarks/.venvs/celery)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from celery import Celery, group
from common import LATENCY_KEY, QUEUE, Adapter, main

NAME = "celery"
REQUIREMENTS = ["celery[redis]==5.7.0", "redis==8.1.0", "hiredis==3.5.0"]
SETTINGS = ("Redis broker, no result backend, task_acks_late (keeps a running job in the "
            "broker's unacked hash), prefetch multiplier 64, -O fair, rate limits off, "
            "--without-gossip/mingle/heartbeat; prefork pool with -c P (P worker processes) "
            "for noop/latency, --pool threads -c 100 in one process for io")

HERE = Path(__file__).resolve().parent
MODULE = Path(__file__).stem


def _bench_url() -> str:
    if "--url" in sys.argv[:-1]:
        return sys.argv[sys.argv.index("--url") + 1]
    return os.environ.get("BENCH_URL", "redis://127.0.0.1:6379/0")


app = Celery(MODULE, broker=_bench_url())
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=64,
    worker_disable_rate_limits=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
_client: redis.Redis | None = None


@app.task(name="noop")
def noop(i: int) -> None:
    return None


@app.task(name="io")
def io(i: int) -> None:
    time.sleep(0.01)


@app.task(name="latency")
def latency(i: int) -> None:
    global _client
    t = time.time()
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_URL"])
    _client.rpush(LATENCY_KEY, t)


TASKS = {"noop": noop, "io": io, "latency": latency}


class CeleryAdapter(Adapter):
    name = NAME

    def enqueue_one(self, kind: str, i: int, delay_s: float = 0.0) -> None:
        # apply_async returns once the message is published (LPUSH'd or held by the worker)
        TASKS[kind].apply_async((i,), countdown=delay_s or None)

    def enqueue_bulk(self, kind: str, n: int, delay_s: float = 0.0) -> bool:
        task = TASKS[kind]
        for start in range(0, n, 1000):
            group(task.s(i).set(countdown=delay_s or None)
                  for i in range(start, min(start + 1000, n))).apply_async()
        return True

    def start_workers(
        self, kind: str, processes: int, concurrency: int
    ) -> list[subprocess.Popen[bytes]]:
        celery = str(Path(sys.executable).parent / "celery")
        env = {**os.environ, "BENCH_URL": self.url, "PYTHONPATH": str(HERE)}
        if kind == "io":
            pool = ["--pool", "threads", "--concurrency", str(concurrency)]
        else:
            pool = ["--pool", "prefork", "--concurrency", str(processes)]
        cmd = [celery, "-A", MODULE, "worker", "-Q", QUEUE, *pool, "-O", "fair",
               "--without-gossip", "--without-mingle", "--without-heartbeat",
               "--loglevel", "WARNING"]
        return [subprocess.Popen(cmd, env=env, cwd=HERE, stdout=subprocess.DEVNULL)]

    def _count(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(QUEUE)  # waiting
        pipe.hlen("unacked")  # taken by a worker (prefetched, delayed or running), not yet acked
        return sum(pipe.execute())

    def remaining(self) -> int:
        left = self._count()
        if left == 0:
            # kombu BRPOPs a message and only then HSETs it into "unacked": confirm a zero
            # after a pause so a message caught between the two is not missed
            time.sleep(0.005)
            left = self._count()
        return left


if __name__ == "__main__":
    main(CeleryAdapter)
