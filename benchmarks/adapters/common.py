"""What every benchmark adapter shares. Runs inside each peer's own virtualenv,
so it needs only the standard library and redis-py (every peer installs it).

An adapter is a program run as::

    <peer venv>/bin/python benchmarks/adapters/<peer>.py SCENARIO --url URL --n N \
        [--concurrency C] [--processes P]

that prints, as the last line of its stdout, one JSON object made by
:func:`report`. It subclasses :class:`Adapter` and implements the peer's part:
``enqueue_one``, ``enqueue_bulk``, ``start_workers`` (the peer's own worker
processes, with its recommended fast settings) and ``remaining`` (jobs of the
benchmark queue not yet finished, read from the peer's own Redis structures).
Everything else (timing, polling, memory, command counts, idle cost) is here
so every peer is measured the same way.

Scenarios (see ``SCENARIOS``):
  enqueue        N no-op jobs added one by one, each awaited      -> jobs/s
  enqueue_bulk   N no-op jobs through the peer's bulk API          -> jobs/s
  drain          N waiting no-op jobs drained by P worker processes -> jobs/s,
                 timed from the first finished job to the last (start-up excluded)
  io             N jobs that each sleep 10 ms (asyncio.sleep, or time.sleep for
                 thread-based peers), concurrency C (100) in one process -> jobs/s
  latency        an idle worker; N jobs added one at a time, each waited for;
                 enqueue-to-start in ms (p50, p99), the start time recorded by the
                 job into a Redis list
  delayed        N jobs added with a delay so all fall due at the same instant;
                 jobs/s from that instant until the last is done
  memory         bytes of Redis memory (used_memory_dataset) per waiting job, and left
                 per finished job after a drain with the peer's default retention;
                 Redis commands per processed job (INFO commandstats over the drain)
  idle           one idle worker for 10 s: Redis commands/s and worker CPU %
  producers      C producer coroutines (or promises) in one process adding N no-op
                 jobs between them, each awaiting its own add, no worker -> jobs/s
                 (C = 1: the async one-by-one rate); peers without an async
                 producer report "not measured"
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import redis

QUEUE = "bench"
SCENARIOS = ("enqueue", "enqueue_bulk", "drain", "io", "latency", "delayed", "memory", "idle",
             "producers")
LATENCY_KEY = "bench:latency"  # jobs of the latency scenario RPUSH their start time here
POLL = 0.002


def report(scenario: str, **fields: Any) -> None:
    print(json.dumps({"scenario": scenario, **fields}), flush=True)


def now() -> float:
    return time.time()


class Adapter:
    """Base of a peer's adapter. Jobs take ``kind`` in {"noop", "io", "latency"}."""

    name = "?"

    def __init__(self, url: str) -> None:
        self.url = url
        # No read timeout: redis-py 8 defaults to 5 s, which breaks the latency scenario's
        # BLPOP (60 s warm-up, 30 s per sample) with a client-side TimeoutError.
        self.redis = redis.Redis.from_url(url, socket_timeout=None)

    # -- the peer's part ------------------------------------------------------

    def enqueue_one(self, kind: str, i: int, delay_s: float = 0.0) -> None:
        """Add one job (and wait until the peer acknowledged it)."""
        raise NotImplementedError

    def enqueue_bulk(self, kind: str, n: int, delay_s: float = 0.0) -> bool:
        """Add n jobs with the peer's bulk API; False if it has none."""
        return False

    def enqueue_concurrent(self, kind: str, n: int, producers: int) -> bool:
        """Add n jobs from ``producers`` concurrent producers in this process (each
        adds its share one by one, awaiting each add); False if not measured."""
        return False

    def start_workers(
        self, kind: str, processes: int, concurrency: int
    ) -> list[subprocess.Popen[bytes]]:
        """Launch the peer's worker processes for QUEUE; return them."""
        raise NotImplementedError

    def remaining(self) -> int:
        """Jobs of QUEUE added but not yet finished (waiting + delayed + running)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the adapter opened (connections, event loops)."""

    # -- shared machinery -------------------------------------------------------

    def fill(self, kind: str, n: int, delay_s: float = 0.0) -> None:
        if not self.enqueue_bulk(kind, n, delay_s):
            for i in range(n):
                self.enqueue_one(kind, i, delay_s)

    def wait_done(
        self, n: int, timeout: float = 600.0, on_first: Any = None
    ) -> tuple[float, float, int]:
        """Poll until nothing remains. Returns (first finish time, last, jobs after
        first); calls ``on_first()`` when the first job is seen finished."""
        deadline = now() + timeout
        first = 0.0
        counted = 0
        while True:
            left = self.remaining()
            t = now()
            if not first and left < n:
                first, counted = t, left
                if on_first is not None:
                    on_first()
            if left <= 0:
                return first, t, counted
            if t > deadline:
                raise TimeoutError(f"{left} of {n} jobs still not finished after {timeout}s")
            time.sleep(POLL)

    def stop(self, procs: Sequence[subprocess.Popen[bytes]]) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def commandstats(self) -> int:
        info = self.redis.info("commandstats")
        return sum(int(v["calls"]) for k, v in info.items()
                   if k not in ("cmdstat_info", "cmdstat_config|resetstat"))

    # -- scenarios ---------------------------------------------------------------

    def run(self, scenario: str, n: int, processes: int, concurrency: int) -> None:
        getattr(self, "scenario_" + scenario)(n, processes, concurrency)

    def scenario_enqueue(self, n: int, processes: int, concurrency: int) -> None:
        t0 = now()
        for i in range(n):
            self.enqueue_one("noop", i)
        report("enqueue", value=n / (now() - t0), unit="jobs/s")

    def scenario_enqueue_bulk(self, n: int, processes: int, concurrency: int) -> None:
        t0 = now()
        if not self.enqueue_bulk("noop", n):
            report("enqueue_bulk", value=None, unit="jobs/s", note="no bulk API")
            return
        report("enqueue_bulk", value=n / (now() - t0), unit="jobs/s")

    def scenario_producers(self, n: int, processes: int, concurrency: int) -> None:
        t0 = now()
        if not self.enqueue_concurrent("noop", n, concurrency):
            report("producers", value=None, unit="jobs/s", note="not measured")
            return
        elapsed = now() - t0
        if self.remaining() != n:
            raise RuntimeError(f"{self.remaining()} jobs waiting after adding {n}")
        report("producers", value=n / elapsed, unit="jobs/s", producers=concurrency)

    def _redis_cpu(self) -> float:
        info = self.redis.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def _drain(self, kind: str, n: int, processes: int, concurrency: int) -> dict[str, float]:
        """Jobs/s, and the CPU (% of one core) that Redis and the workers used meanwhile:
        which of them bounds the figure."""
        self.fill(kind, n)
        started = now()
        procs = self.start_workers(kind, processes, concurrency)
        at_first: list[float] = []
        try:
            first, last, left_at_first = self.wait_done(
                n, on_first=lambda: at_first.extend((self._redis_cpu(), _cpu_seconds(procs)))
            )
            redis_cpu = self._redis_cpu() - at_first[0]
            workers_cpu = _cpu_seconds(procs) - at_first[1]
        finally:
            self.stop(procs)
        elapsed = last - first
        if elapsed <= 0:
            # Every job finished between two polls (only with tiny N, as in the
            # smoke run): time from the workers' start instead, start-up included.
            elapsed, left_at_first = last - started, n
        return {"value": left_at_first / elapsed,
                "redis_cpu_percent": round(100 * redis_cpu / elapsed),
                "workers_cpu_percent": round(100 * workers_cpu / elapsed)}

    def scenario_drain(self, n: int, processes: int, concurrency: int) -> None:
        report("drain", unit="jobs/s", processes=processes,
               **self._drain("noop", n, processes, concurrency))

    def scenario_io(self, n: int, processes: int, concurrency: int) -> None:
        report("io", unit="jobs/s", concurrency=concurrency,
               **self._drain("io", n, processes, concurrency))

    def scenario_latency(self, n: int, processes: int, concurrency: int) -> None:
        procs = self.start_workers("latency", 1, concurrency)
        try:
            self.redis.delete(LATENCY_KEY)
            self.enqueue_one("latency", -1)  # warm-up: the worker is up once this ran
            self.redis.blpop([LATENCY_KEY], timeout=60)
            samples = []
            for i in range(n):
                t0 = now()
                self.enqueue_one("latency", i)
                popped = self.redis.blpop([LATENCY_KEY], timeout=30)
                if popped is None:
                    raise TimeoutError("a latency job did not start within 30 s")
                samples.append((float(popped[1]) - t0) * 1000)
                time.sleep(0.01)  # let the worker go idle again between samples
        finally:
            self.stop(procs)
        samples.sort()
        report("latency", value=statistics.median(samples), unit="ms",
               p50=statistics.median(samples), p99=samples[int(len(samples) * 0.99) - 1])

    def scenario_delayed(self, n: int, processes: int, concurrency: int) -> None:
        procs = self.start_workers("noop", processes, concurrency)
        try:
            t0 = now()
            due = t0 + 5.0 + n / 2000  # room to add them all before they fall due
            for i in range(n):
                self.enqueue_one("noop", i, delay_s=max(due - now(), 0.001))
            while now() < due:
                time.sleep(POLL)
            _, last, _ = self.wait_done(n)
        finally:
            self.stop(procs)
        report("delayed", value=n / (last - due), unit="jobs/s")

    def scenario_memory(self, n: int, processes: int, concurrency: int) -> None:
        before = int(self.redis.info("memory")["used_memory_dataset"])
        self.fill("noop", n)
        waiting = int(self.redis.info("memory")["used_memory_dataset"])
        self.redis.config_resetstat()
        procs = self.start_workers("noop", 1, concurrency)
        try:
            self.wait_done(n)
        finally:
            self.stop(procs)
        commands = self.commandstats()
        kept = int(self.redis.info("memory")["used_memory_dataset"])
        report("memory", value=(waiting - before) / n, unit="bytes/waiting job",
               per_waiting_job=(waiting - before) / n, per_finished_job=(kept - before) / n,
               commands_per_job=commands / n)

    def scenario_idle(self, n: int, processes: int, concurrency: int) -> None:
        procs = self.start_workers("noop", 1, concurrency)
        try:
            self.enqueue_one("noop", 0)
            self.wait_done(1)
            time.sleep(1.0)
            self.redis.config_resetstat()
            cpu0 = _cpu_seconds(procs)
            t0 = now()
            time.sleep(10.0)
            elapsed = now() - t0
            cpu = _cpu_seconds(procs) - cpu0
            commands = self.commandstats()
        finally:
            self.stop(procs)
        report("idle", value=commands / elapsed, unit="commands/s",
               cpu_percent=100 * cpu / elapsed)


def _cpu_seconds(procs: Sequence[subprocess.Popen[bytes]]) -> float:
    """User+system CPU of the processes and their children, from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = {p.pid for p in procs}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        if pid in pids or ppid in pids:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def main(adapter_cls: type[Adapter], argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args(argv)
    adapter = adapter_cls(args.url)
    try:
        adapter.run(args.scenario, args.n, args.processes, args.concurrency)
    finally:
        adapter.close()
    sys.stdout.flush()
