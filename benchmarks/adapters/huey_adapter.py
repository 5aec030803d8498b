"""Huey's benchmark adapter, RedisHuey (runs in benchmarks/.venvs/huey).

A task Huey has popped from its Redis list lives only in the consumer's memory until it is done,
so the only trace a finished job leaves in Redis is its result: the tasks return ``True`` (Huey
stores a result when a task returns something other than None) and ``remaining()`` is the number
of jobs this adapter added minus the number of results stored.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from common import LATENCY_KEY, QUEUE, Adapter, main
from huey import RedisHuey

NAME = "huey"
REQUIREMENTS = ["huey==3.5.4", "redis==8.1.0", "hiredis==3.5.0"]
SETTINGS = ("RedisHuey (blocking BRPOP), results on (tasks return True; kept until read, "
            "Huey's default) so finished jobs are visible; huey_consumer -k process -w P for "
            "noop/latency, -k thread -w 100 for io; scheduler interval 1 s (default); no bulk API "
            "(task.map enqueues one by one)")

HERE = Path(__file__).resolve().parent
MODULE = Path(__file__).stem


def _bench_url() -> str:
    if "--url" in sys.argv[:-1]:
        return sys.argv[sys.argv.index("--url") + 1]
    return os.environ.get("BENCH_URL", "redis://127.0.0.1:6379/0")


huey = RedisHuey(QUEUE, url=_bench_url())
_client: redis.Redis | None = None


@huey.task()
def noop(i: int) -> bool:
    return True


@huey.task()
def io(i: int) -> bool:
    time.sleep(0.01)
    return True


@huey.task()
def latency(i: int) -> bool:
    global _client
    t = time.time()
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_URL"])
    _client.rpush(LATENCY_KEY, t)
    return True


class HueyAdapter(Adapter):
    name = NAME

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # Huey names a task after its module: use the tasks as the consumer imports them
        module = importlib.import_module(MODULE)
        self.tasks = {"noop": module.noop, "io": module.io, "latency": module.latency}
        self.results_key = module.huey.storage.result_key
        self.added = 0

    def enqueue_one(self, kind: str, i: int, delay_s: float = 0.0) -> None:
        task = self.tasks[kind]
        if delay_s > 0:
            task.schedule((i,), delay=delay_s)
        else:
            task(i)
        self.added += 1

    def start_workers(
        self, kind: str, processes: int, concurrency: int
    ) -> list[subprocess.Popen[bytes]]:
        consumer = str(Path(sys.executable).parent / "huey_consumer")
        env = {**os.environ, "BENCH_URL": self.url, "PYTHONPATH": str(HERE)}
        if kind == "io":
            workers = ["-k", "thread", "-w", str(concurrency)]
        else:
            workers = ["-k", "process", "-w", str(processes)]
        return [subprocess.Popen([consumer, f"{MODULE}.huey", *workers, "--quiet"],
                                 env=env, cwd=HERE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)]

    def remaining(self) -> int:
        return self.added - int(self.redis.hlen(self.results_key))


if __name__ == "__main__":
    main(HueyAdapter)
