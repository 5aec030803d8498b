"""taskiq's benchmark adapter, with taskiq-redis (runs in benchmarks/.venvs/taskiq)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import LATENCY_KEY, QUEUE, Adapter, main
from redis.asyncio import Redis
from taskiq import TaskiqScheduler
from taskiq_redis import ListRedisScheduleSource, RedisStreamBroker

NAME = "taskiq"
REQUIREMENTS = ["taskiq==0.13.0", "taskiq-redis==1.2.4", "redis==8.1.0", "hiredis==3.5.0"]
SETTINGS = ("RedisStreamBroker (acknowledged, README's choice) with default xread_count 100, "
            "`taskiq worker --workers P --max-async-tasks 50 (100 for io)`, ack when saved, "
            "no result backend (taskiq's default), --log-level WARNING; delayed jobs through "
            "`taskiq scheduler --update-interval 1` with ListRedisScheduleSource")
URL_ENV = "BENCH_REDIS_URL"
GROUP = "taskiq"  # RedisStreamBroker's default consumer group
HERE = Path(__file__).resolve().parent


def make_broker(url: str) -> tuple[RedisStreamBroker, dict[str, Any]]:
    broker = RedisStreamBroker(url, queue_name=QUEUE)
    latency_client: list[Redis] = []

    @broker.task(task_name="noop")
    async def noop(i: int) -> None:
        return None

    @broker.task(task_name="io")
    async def io(i: int) -> None:
        await asyncio.sleep(0.01)

    @broker.task(task_name="latency")
    async def latency(i: int) -> None:
        if not latency_client:
            latency_client.append(Redis.from_url(url))
        await latency_client[0].rpush(LATENCY_KEY, time.time())

    return broker, {"noop": noop, "io": io, "latency": latency}


def make_source(url: str) -> ListRedisScheduleSource:
    return ListRedisScheduleSource(url, prefix=f"{QUEUE}:schedule")


def broker_from_env() -> RedisStreamBroker:
    """For `taskiq worker taskiq_adapter:broker_from_env`."""
    return make_broker(os.environ[URL_ENV])[0]


def scheduler_from_env() -> TaskiqScheduler:
    """For `taskiq scheduler taskiq_adapter:scheduler_from_env`."""
    url = os.environ[URL_ENV]
    return TaskiqScheduler(make_broker(url)[0], sources=[make_source(url)])


class TaskiqAdapter(Adapter):
    name = NAME

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.loop = asyncio.new_event_loop()
        self.broker, self.tasks = make_broker(url)
        # Declares the consumer group (at "$", on the still empty stream), so that jobs
        # added before the workers start are delivered to them.
        self.loop.run_until_complete(self.broker.startup())
        self.source = make_source(url)
        self.scheduler: subprocess.Popen[bytes] | None = None
        self._time_keys: set[str] = set()
        self._env = {**os.environ, URL_ENV: url}
        self._bin = Path(sys.executable).parent / "taskiq"

    def enqueue_one(self, kind: str, i: int, delay_s: float = 0.0) -> None:
        task = self.tasks[kind]
        if not delay_s:
            self.loop.run_until_complete(task.kiq(i))
            return
        if self.scheduler is None:
            self.scheduler = subprocess.Popen(
                [str(self._bin), "scheduler", "taskiq_adapter:scheduler_from_env",
                 "--app-dir", str(HERE), "--update-interval", "1", "--log-level", "WARNING"],
                env=self._env)
        at = datetime.now(UTC) + timedelta(seconds=delay_s)
        self._time_keys.add(self.source._get_time_key(at))
        self.loop.run_until_complete(task.schedule_by_time(self.source, at, i))

    # taskiq has no bulk enqueue API: enqueue_bulk stays the base class's False.

    def start_workers(
        self, kind: str, processes: int, concurrency: int
    ) -> list[subprocess.Popen[bytes]]:
        # One `taskiq worker` manager process that forks `processes` worker processes.
        return [subprocess.Popen(
            [str(self._bin), "worker", "taskiq_adapter:broker_from_env", "--app-dir", str(HERE),
             "--workers", str(processes), "--max-async-tasks", str(concurrency),
             "--log-level", "WARNING"],
            env=self._env)]

    def stop(self, procs: Sequence[subprocess.Popen[bytes]]) -> None:
        # taskiq's manager answers SIGTERM by sending SIGINT to its worker processes and
        # exiting, but a RedisStreamBroker worker then keeps polling the stream and never
        # exits: give it a moment, then kill it.
        children = [pid for p in procs for pid in _children(p.pid)]
        super().stop(procs)
        deadline = time.time() + 3.0
        for pid in children:
            while _alive(pid) and time.time() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    def remaining(self) -> int:
        # The consumer group's lag (entries not yet delivered) plus its pending entries
        # (delivered, not yet acknowledged; the worker acks once the job is done), plus
        # delayed jobs still in the schedule source's per-minute lists.
        pipe = self.redis.pipeline(transaction=False)
        pipe.xinfo_groups(QUEUE)
        for key in self._time_keys:
            pipe.llen(key)
        groups, *scheduled = pipe.execute()
        group = next(g for g in groups if g["name"] in (GROUP, GROUP.encode()))
        return int(group["lag"] or 0) + int(group["pending"]) + sum(scheduled)

    def close(self) -> None:
        if self.scheduler is not None:
            self.stop([self.scheduler])
        self.loop.run_until_complete(self.broker.shutdown())
        self.loop.close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


if __name__ == "__main__":
    main(TaskiqAdapter)
