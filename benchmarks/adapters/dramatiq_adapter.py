"""Dramatiq's benchmark adapter, Redis broker (runs in benchmarks/.venvs/dramatiq)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dramatiq
import redis
from common import LATENCY_KEY, QUEUE, Adapter, main
from dramatiq.brokers.redis import RedisBroker

NAME = "dramatiq"
REQUIREMENTS = ["dramatiq[redis]==2.2.1", "redis==8.1.0", "hiredis==3.5.0"]
SETTINGS = ("RedisBroker, default middleware, no Results middleware, ack after processing "
            "(Dramatiq's only mode), prefetch 2 x threads (default); dramatiq -p P -t 8 "
            "(default threads) for noop/latency, -p 1 -t 100 for io; no bulk API "
            "(group.run() enqueues one by one)")

HERE = Path(__file__).resolve().parent
MODULE = Path(__file__).stem
NAMESPACE = "dramatiq"


def _bench_url() -> str:
    if "--url" in sys.argv[:-1]:
        return sys.argv[sys.argv.index("--url") + 1]
    return os.environ.get("BENCH_URL", "redis://127.0.0.1:6379/0")


broker = RedisBroker(url=_bench_url(), namespace=NAMESPACE)
dramatiq.set_broker(broker)
_client: redis.Redis | None = None


@dramatiq.actor(queue_name=QUEUE)
def noop(i: int) -> None:
    return None


@dramatiq.actor(queue_name=QUEUE)
def io(i: int) -> None:
    time.sleep(0.01)


@dramatiq.actor(queue_name=QUEUE)
def latency(i: int) -> None:
    global _client
    t = time.time()
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_URL"])
    _client.rpush(LATENCY_KEY, t)


ACTORS = {"noop": noop, "io": io, "latency": latency}


class DramatiqAdapter(Adapter):
    name = NAME

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # message data of a queue lives in a hash until the message is acked (done); a delayed
        # message sits in the delay queue's hash until a worker moved it to the queue
        self._keys = (f"{NAMESPACE}:{QUEUE}.msgs", f"{NAMESPACE}:{QUEUE}.DQ.msgs")

    def enqueue_one(self, kind: str, i: int, delay_s: float = 0.0) -> None:
        actor = ACTORS[kind]
        if delay_s > 0:
            actor.send_with_options(args=(i,), delay=int(delay_s * 1000))
        else:
            actor.send(i)

    def start_workers(
        self, kind: str, processes: int, concurrency: int
    ) -> list[subprocess.Popen[bytes]]:
        cli = str(Path(sys.executable).parent / "dramatiq")
        env = {**os.environ, "BENCH_URL": self.url, "PYTHONPATH": str(HERE)}
        if kind == "io":
            workers = ["--processes", "1", "--threads", str(concurrency)]
        else:
            workers = ["--processes", str(processes), "--threads", "8"]
        return [subprocess.Popen([cli, MODULE, *workers, "--queues", QUEUE],
                                 env=env, cwd=HERE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)]

    def remaining(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for key in self._keys:
            pipe.hlen(key)
        return sum(pipe.execute())

    def close(self) -> None:
        broker.close()


if __name__ == "__main__":
    main(DramatiqAdapter)
