"""Where one enqueue's time goes: conveyor.sync.Queue.add against its parts.

    .venv/bin/python -m benchmarks.enqueue_profile [--n 5000]

On a private redis-server (AOF off), best of three runs of ``n`` adds each:

- ``Queue.add`` as a web view calls it (one job, blocking client);
- the add script alone, called with the same arguments (no conveyor Python);
- an ``LPUSH`` of a small payload: one command's round trip, what a plain
  list queue's enqueue costs (the floor for everyone);
- the add script's time inside Redis (INFO commandstats) and conveyor's option
  validation per job.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import redis

from conveyor._prepare import new_job, prepare_job
from conveyor.embedded import RedisServer
from conveyor.sync import Queue


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    n = parser.parse_args().n
    server = RedisServer()
    server.start()
    client = redis.Redis.from_url(server.url)
    client.config_set("appendonly", "no")
    queue = Queue("profile", server.url)
    inner = queue.queue

    def rate(add: Callable[[int], object]) -> float:
        best = 0.0
        for _ in range(3):
            client.flushall()
            inner._registered = False
            start = time.perf_counter()
            for i in range(n):
                add(i)
            best = max(best, n / (time.perf_counter() - start))
        return best

    full = rate(lambda i: queue.add("noop", i))
    client.flushall()
    client.config_resetstat()
    for i in range(n):
        queue.add("noop", i)
    stats = client.info("commandstats")["cmdstat_evalsha"]
    inside = stats["usec"] / stats["calls"]
    keys, args = inner.scripts.add_jobs_layout([new_job(*prepare_job(inner, "noop", 1, {}))])
    assert queue._add_jobs is not None
    script = queue._add_jobs
    script_only = rate(lambda i: script(keys, args))
    lpush = rate(lambda i: client.lpush("list", b'{"id": "x", "data": 1}'))
    start = time.perf_counter()
    for i in range(n):
        prepare_job(inner, "noop", i, {})
    prepare = (time.perf_counter() - start) / n * 1e6
    print(f"Queue.add:                      {full:8,.0f}/s  {1e6 / full:6.1f} us each")
    print(f"the add script alone:           {script_only:8,.0f}/s  {1e6 / script_only:6.1f} us")
    print(f"LPUSH (one command):            {lpush:8,.0f}/s  {1e6 / lpush:6.1f} us")
    print(f"the add script inside Redis:    {inside:6.1f} us")
    print(f"option validation and JSON:     {prepare:6.1f} us")
    queue.close()
    server.stop()


if __name__ == "__main__":
    main()
