"""One partitioned queue on a Redis Cluster of 1 and of 3 masters: Redis work
per job and per master, counted with callgrind, and jobs/s without it.

    .venv/bin/python -m benchmarks.cluster                 # callgrind, then wall clock
    .venv/bin/python -m benchmarks.cluster --jobs 2000 --no-callgrind
    .venv/bin/python -m benchmarks.cluster --partitions 9 --only partitions --no-wall

Each scenario starts its own cluster (chaos/redis_cluster.py: private
redis-servers on free ports, no AOF), adds ``--jobs`` no-op jobs with
``add_bulk`` and drains them with one worker (this process) at
``--concurrency``:

- ``1 master, plain``: a cluster of one master holding every slot, a plain
  queue (the reference: what one queue costs on one core);
- ``1 master, 8 partitions``: the same master, ``Queue(..., partitions=8)``;
- ``3 masters, 8 partitions``: the partitions spread 3/3/2 over the masters
  (so the busiest master can do no better than 3/8 = 37.5% of the 1-master
  work; ``--partitions 9`` spreads them 3/3/3).

``--only WORD...`` runs the scenarios whose label holds one of the words.

Instructions: every redis-server runs under ``valgrind --tool=callgrind``;
after set-up (cluster formed, clients connected, queue registered) the counters
are zeroed with ``callgrind_control -z <pid>``, dumped with
``callgrind_control -d <pid>`` after the adds and again after the drain, and
the ``totals:`` line of each dump is read. Instruction counts do not depend on
how busy the shared machine is, wall time does. A master's count includes its
own background work while the phase lasts (serverCron, the cluster bus pings):
``idle Ir/s`` is measured on the same masters with no clients, and the
``net`` column takes it off (it is small beside the work unless a phase is slow).

Wall clock: the same scenarios without valgrind, one after another in one run
(noisy on a shared machine), with the Redis CPU (INFO cpu, user + sys, summed
over the masters) and this process's CPU per job.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from chaos.redis_cluster import RedisCluster

from conveyor import Connector, Job, Queue, Worker

#: (label, masters, partitions): partitions 0 is a plain queue.
SCENARIOS = [("1 master, plain", 1, 0), ("1 master, 8 partitions", 1, 8),
             ("3 masters, 8 partitions", 3, 8)]


def _scenarios(partitions: int) -> None:
    """``--partitions n``: the partitioned scenarios with ``n`` partitions."""
    SCENARIOS[1:] = [(f"1 master, {partitions} partitions", 1, partitions),
                     (f"3 masters, {partitions} partitions", 3, partitions)]
_TOTALS = re.compile(r"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


@dataclass
class Phase:
    """What one phase (adds or drain) cost: wall seconds and, per master port,
    instructions (callgrind) or CPU seconds (INFO cpu)."""

    seconds: float = 0.0
    per_master: dict[int, float] = field(default_factory=dict)


class Callgrind:
    """Zero and dump the counters of the cluster's redis-servers."""

    def __init__(self, cluster: RedisCluster, out: Path) -> None:
        procs = cluster.procs[:len(cluster.ports)]  # the masters (no replica here)
        self.pids = {port: proc.pid for port, proc in zip(cluster.ports, procs, strict=True)}
        self.out = out

    def _control(self, flag: str, pid: int) -> None:
        subprocess.run(["callgrind_control", flag, str(pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def zero(self) -> None:
        for pid in self.pids.values():
            self._control("-z", pid)

    def dump(self) -> dict[int, float]:
        """Instructions per master since the last zero or dump (a dump zeroes)."""
        found = {}
        for port, pid in self.pids.items():
            before = set(self.out.glob(f"callgrind.out.{pid}*"))
            self._control("-d", pid)
            [new] = set(self.out.glob(f"callgrind.out.{pid}*")) - before
            found[port] = float(sum(int(n) for n in _TOTALS.findall(new.read_text())[:1]))
        return found


async def _cpu(clients: dict[int, aioredis.Redis]) -> dict[int, float]:
    found = {}
    for port, client in clients.items():
        info: dict[str, Any] = await client.info("cpu")
        found[port] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return found


async def run_scenario(cluster: RedisCluster, partitions: int, jobs: int, concurrency: int,
                       grind: Callgrind | None) -> tuple[Phase, Phase, float]:
    """Add then drain ``jobs`` jobs; the two phases and this process's CPU s in the drain."""
    clients = {port: aioredis.Redis(host="127.0.0.1", port=port) for port in cluster.ports}
    done = asyncio.Event()
    finished = 0

    def count(job: Job, result: Any) -> None:
        nonlocal finished
        finished += 1
        if finished == jobs:
            done.set()

    if grind is not None:  # a 1,000-job add script runs for seconds under valgrind:
        for client in clients.values():  # others would be answered BUSY meanwhile,
            await client.config_set("busy-reply-threshold", 600_000)
            await client.config_set("cluster-node-timeout", 600_000)  # and it marked failed
    options: dict[str, Any] = {"partitions": partitions} if partitions else {}
    async with Connector(cluster.url) as connector:
        queue = Queue("bench", connector, **options)
        await _warm_up(queue, connector, max(partitions, 1))
        # Under valgrind a fetched batch can wait past the default 30 s lock and
        # be run twice: a cost of the slowed server, not of the queue.
        worker = Worker("bench", _noop, connection=connector, concurrency=concurrency,
                        lock_duration=30_000 if grind is None else 600_000)
        worker.on("completed", count)

        async def measure(step: Any) -> Phase:
            if grind is not None:
                await asyncio.to_thread(grind.zero)
            before = await _cpu(clients)
            start = time.perf_counter()
            await step()
            phase = Phase(time.perf_counter() - start)
            if grind is not None:
                phase.per_master = await asyncio.to_thread(grind.dump)
            else:
                after = await _cpu(clients)
                phase.per_master = {p: after[p] - before[p] for p in after}
            return phase

        async def add() -> None:
            await queue.add_bulk([{"name": "noop", "data": i} for i in range(jobs)])

        adds = await measure(add)
        task: asyncio.Task[None] | None = None
        cpu = 0.0

        async def drain() -> None:
            nonlocal task, cpu
            cpu = time.process_time()
            task = asyncio.create_task(worker.run())
            await done.wait()
            cpu = time.process_time() - cpu

        drained = await measure(drain)
        await worker.close()
        assert task is not None
        await task
        counts = await queue.get_job_counts("waiting", "active", "failed")
        assert not any(counts.values()), counts  # completed: only the newest are kept
        await queue.close()
    for client in clients.values():
        await client.aclose()
    return adds, drained, cpu


async def _warm_up(queue: Queue, connector: Connector, partitions: int) -> None:
    """A job through every partition, so that each master has the queue
    registered, its scripts loaded (a first EVALSHA answers NOSCRIPT, and the
    script is compiled) and its clients connected before the counting starts."""
    await queue.add_bulk([{"name": "warm-up"} for _ in range(partitions)])
    worker = Worker("bench", _noop, connection=connector)
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 120
    while sum((await queue.get_job_counts("waiting", "active")).values()):
        assert time.monotonic() < deadline, "the warm-up jobs did not run"
        await asyncio.sleep(0.05)  # polling for the condition, with a deadline
    await worker.close()
    await task


async def _noop(job: Job) -> None:
    return None


def _idle_rate(grind: Callgrind, seconds: float = 5.0) -> dict[int, float]:
    grind.zero()
    time.sleep(seconds)  # measuring what the servers do on their own over a span of time
    return {port: ir / seconds for port, ir in grind.dump().items()}


def _table(label: str, masters: int, phase_name: str, phase: Phase, jobs: int,
           idle: dict[int, float], reference: float | None) -> list[str]:
    total = sum(phase.per_master.values())
    rows = []
    for port, ir in sorted(phase.per_master.items()):
        net = ir - idle.get(port, 0.0) * phase.seconds
        vs = f"{100 * net / jobs / reference:5.1f}%" if reference else "   - "
        rows.append(f"| {label} | {phase_name} | :{port} | {ir / jobs:,.0f} | {net / jobs:,.0f} "
                    f"| {100 * ir / total:4.1f}% | {vs} |")
    return rows


async def callgrind_runs(jobs: int, concurrency: int) -> None:
    print(f"## Redis instructions per job (callgrind), {jobs} jobs, concurrency {concurrency}\n")
    print("| scenario | phase | master | Ir/job | net Ir/job | share | vs 1 master |")
    print("|---|---|---|---:|---:|---:|---:|")
    reference: dict[str, float] = {}
    for label, masters, partitions in _chosen():
        with tempfile.TemporaryDirectory(prefix="conveyor-callgrind-") as out:
            wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.out.%p"]
            with RedisCluster(masters, wrap=wrap) as cluster:
                grind = Callgrind(cluster, Path(out))
                idle = await asyncio.to_thread(_idle_rate, grind)
                adds, drained, _ = await run_scenario(cluster, partitions, jobs, concurrency,
                                                      grind)
        for name, phase in (("add", adds), ("drain", drained)):
            net_total = sum(ir - idle[p] * phase.seconds for p, ir in phase.per_master.items())
            if masters == 1 and partitions:
                reference[name] = net_total / jobs
            ref = reference.get(name) if masters > 1 else None
            for row in _table(label, masters, name, phase, jobs, idle, ref):
                print(row)
        print(f"| {label} | idle Ir/s per master | | "
              + ", ".join(f"{v:,.0f}" for v in idle.values()) + " | | | |")


async def wall_runs(jobs: int, concurrency: int) -> None:
    print(f"\n## Wall clock without valgrind, {jobs} jobs, concurrency {concurrency}\n")
    print("| scenario | adds jobs/s | drain jobs/s | Redis CPU µs/job (max master, all) "
          "| worker CPU µs/job |")
    print("|---|---:|---:|---:|---:|")
    for label, masters, partitions in _chosen():
        with RedisCluster(masters) as cluster:
            adds, drained, cpu = await run_scenario(cluster, partitions, jobs, concurrency, None)
        redis = drained.per_master
        print(f"| {label} | {jobs / adds.seconds:,.0f} | {jobs / drained.seconds:,.0f} | "
              f"{1e6 * max(redis.values()) / jobs:.1f}, {1e6 * sum(redis.values()) / jobs:.1f} "
              f"| {1e6 * cpu / jobs:.1f} |")


_only: list[str] = []


def _chosen() -> list[tuple[str, int, int]]:
    return [s for s in SCENARIOS if not _only or any(o in s[0] for o in _only)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--no-callgrind", action="store_true")
    parser.add_argument("--no-wall", action="store_true")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--only", nargs="+", default=[],
                        help="scenarios whose label contains one of these words")
    args = parser.parse_args()
    _only.extend(args.only)
    _scenarios(args.partitions)
    if not args.no_callgrind:
        await callgrind_runs(args.jobs, args.concurrency)
    if not args.no_wall:
        await wall_runs(args.jobs, args.concurrency)


if __name__ == "__main__":
    asyncio.run(main())
