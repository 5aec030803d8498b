"""Job schedulers: every/cron schedules upserted by id, run by workers, one job per slot."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

from conveyor import Job, Queue, ValidationError, Worker
from conveyor.schedulers import JobScheduler, advance_job_scheduler, next_cron_time
from conveyor.sync import Queue as SyncQueue
from helpers import StartWorker, running, wait_for
from redis_server import RedisServer
from worker_proc import command, release_key, started_key

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster

BERLIN = ZoneInfo("Europe/Berlin")


async def redis_ms(redis: aioredis.Redis) -> int:
    sec, usec = await redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def wait_until_redis_ms(redis: aioredis.Redis, ms: int) -> None:
    async def reached() -> bool:
        return await redis_ms(redis) >= ms

    await wait_for(reached, timeout=30, interval=0.02, message=f"redis time >= {ms}")


def slot_of(job_id: str) -> int:
    return int(job_id.rsplit("-", 1)[1])


async def all_job_ids(queue: Queue) -> list[str]:
    jobs = await queue.get_jobs(["waiting", "delayed", "active", "completed", "failed"])
    return sorted(job.id for job in jobs)


class Recorder:
    """A processor that notes (job id, Redis start time) of every run."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, int]] = []

    async def __call__(self, job: Job) -> Any:
        self.runs.append((job.id, await redis_ms(job.queue.client)))
        return job.data


# -- running on schedule ------------------------------------------------------


async def test_every_makes_one_job_per_interval_on_time(
    queue: Queue, start_worker: StartWorker
) -> None:
    rec = Recorder()
    start_worker(rec)
    scheduler = await queue.upsert_job_scheduler(
        "tick", every=300, job_name="tick", data={"n": 1}
    )
    assert scheduler.next_run is not None

    await wait_for(lambda: len(rec.runs) >= 5, timeout=20)

    slots = [slot_of(job_id) for job_id, _ in rec.runs[:5]]
    assert all(slot % 300 == 0 for slot in slots)  # aligned to multiples of every
    assert [b - a for a, b in itertools.pairwise(slots)] == [300] * 4
    assert slots[0] == round(scheduler.next_run.timestamp() * 1000)
    for (job_id, started), slot in zip(rec.runs, slots, strict=False):
        assert started >= slot, f"{job_id} started before its slot"
        assert started - slot < 1500, f"{job_id} started {started - slot} ms late"
    job = await queue.get_job(rec.runs[0][0])
    assert job is not None and job.name == "tick" and job.return_value == {"n": 1}


@pytest.mark.cluster(False)  # slow, and nothing cluster-specific
async def test_six_field_cron_runs_every_second(queue: Queue, start_worker: StartWorker) -> None:
    rec = Recorder()
    start_worker(rec)
    await queue.upsert_job_scheduler("each-second", cron="* * * * * *")

    await wait_for(lambda: len(rec.runs) >= 3, timeout=20)

    slots = [slot_of(job_id) for job_id, _ in rec.runs[:3]]
    assert all(slot % 1000 == 0 for slot in slots)
    assert [b - a for a, b in itertools.pairwise(slots)] == [1000, 1000]
    assert all(started >= slot for (_, started), slot in zip(rec.runs, slots, strict=False))


# -- exactly one job per slot -------------------------------------------------


async def test_many_processes_advancing_one_slot_make_one_job(
    queue: Queue, redis: aioredis.Redis, redis_url: str
) -> None:
    await queue.upsert_job_scheduler("race", every=200)
    [pending] = await all_job_ids(queue)
    await wait_until_redis_ms(redis, slot_of(pending))  # its slot is due: time to advance

    racers = [Queue(queue.name, redis_url) for _ in range(12)]
    try:
        await asyncio.gather(*(advance_job_scheduler(q, "race") for q in racers))
    finally:
        for q in racers:
            await q.close()

    ids = await all_job_ids(queue)
    slots = sorted(slot_of(i) for i in ids)
    assert slots[0] == slot_of(pending)
    assert len(set(ids)) == len(ids)
    # Each slot once. The racers may have read the clock a slot apart, and the
    # first of them skips the slots already past when it ran (a loaded machine,
    # or a cluster's slower connects, can take over 200 ms): no gap after that.
    assert slots[1:] == list(range(slots[1], slots[-1] + 1, 200))
    scheduler = await queue.get_job_scheduler("race")
    assert scheduler is not None and scheduler.count == len(ids)


@pytest.fixture
def spawn(redis_url: str, queue_name: str, tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> Path:
        log = tmp_path / f"worker-{len(procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command(redis_url, queue_name), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        return log

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@pytest.mark.cluster(False)  # slow, and nothing cluster-specific
async def test_two_worker_processes_run_each_slot_once(
    queue: Queue, redis: aioredis.Redis, spawn: Any
) -> None:
    await redis.rpush(release_key(queue.name), "go")  # the workers' jobs finish at once
    logs = [spawn(), spawn()]
    await wait_for(lambda: all("started on queue" in log.read_text() for log in logs),
                   timeout=30, message="both worker processes are up")
    await queue.upsert_job_scheduler("shared", every=400)

    async def runs() -> list[str]:
        return [r.decode() for r in await redis.lrange(started_key(queue.name), 0, -1)]

    await wait_for(lambda: _at_least(runs, 8), timeout=30)
    started = await runs()
    job_ids = [entry.split(":", 1)[1] for entry in started]
    assert len(job_ids) == len(set(job_ids)), f"a slot ran twice: {started}"
    slots = sorted(slot_of(i) for i in job_ids)
    assert slots == list(range(slots[0], slots[-1] + 1, 400)), "a slot was skipped"
    assert (await queue.get_job_scheduler("shared")).count >= len(slots)  # type: ignore[union-attr]


async def _at_least(read: Any, n: int) -> bool:
    return len(await read()) >= n


# -- upsert, remove, limits ---------------------------------------------------


async def test_upsert_replaces_the_schedule_and_its_pending_job(queue: Queue) -> None:
    first = await queue.upsert_job_scheduler("report", every=60_000, data={"v": 1})
    again = await queue.upsert_job_scheduler("report", every=60_000, data={"v": 2})

    assert again.next_run == first.next_run  # same schedule: same slot, same job id
    [job] = await queue.get_jobs("delayed")
    assert job.data == {"v": 2}  # rewritten from the new template
    assert again.count == 1

    replaced = await queue.upsert_job_scheduler("report", cron="0 9 * * *", tz="Europe/Berlin")

    schedulers = await queue.get_job_schedulers()
    assert [s.id for s in schedulers] == ["report"]
    assert schedulers[0].cron == "0 9 * * *" and schedulers[0].every is None
    [job] = await queue.get_jobs("delayed")  # the old schedule's job was withdrawn
    assert replaced.next_run is not None
    assert slot_of(job.id) == round(replaced.next_run.timestamp() * 1000)
    assert replaced.next_run.astimezone(BERLIN).hour == 9


async def test_remove_stops_production_and_withdraws_the_pending_job(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    rec = Recorder()
    start_worker(rec)
    await queue.upsert_job_scheduler("stop-me", every=200)
    await wait_for(lambda: len(rec.runs) >= 2, timeout=20)

    assert await queue.remove_job_scheduler("stop-me") is True
    removed_at = await redis_ms(redis)
    assert await queue.get_job_scheduler("stop-me") is None
    assert await queue.get_job_schedulers() == []
    assert await queue.remove_job_scheduler("stop-me") is False
    assert await queue.get_job_counts("delayed", "waiting") == {"delayed": 0, "waiting": 0}

    runs = len(rec.runs)
    await wait_until_redis_ms(redis, removed_at + 1000)  # five more slots pass
    assert len(rec.runs) <= runs + 1  # at most the one a worker had already taken
    assert await queue.get_job_counts("delayed", "waiting") == {"delayed": 0, "waiting": 0}


async def test_limit_stops_after_that_many_jobs(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    rec = Recorder()
    start_worker(rec)
    await queue.upsert_job_scheduler("thrice", every=150, limit=3)
    await wait_for(lambda: len(rec.runs) >= 3, timeout=20)

    last_slot = max(slot_of(job_id) for job_id, _ in rec.runs)
    await wait_until_redis_ms(redis, last_slot + 1000)
    assert len(rec.runs) == 3
    assert len(await all_job_ids(queue)) == 3
    scheduler = await queue.get_job_scheduler("thrice")
    assert scheduler is not None
    assert (scheduler.count, scheduler.next_run) == (3, None)  # finished, still listed

    # Re-upserting the same schedule (say, at the next deploy) makes no more jobs.
    again = await queue.upsert_job_scheduler("thrice", every=150, limit=3)
    assert again.count == 3 and again.next_run is None
    assert len(await all_job_ids(queue)) == 3


async def test_end_date_stops_production(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    rec = Recorder()
    start_worker(rec)
    end = await redis_ms(redis) + 1000
    await queue.upsert_job_scheduler("until", every=200, end_date=end)

    await wait_until_redis_ms(redis, end + 1000)
    slots = [slot_of(job_id) for job_id, _ in rec.runs]
    assert 4 <= len(slots) <= 5
    assert all(slot <= end for slot in slots)
    assert len(await all_job_ids(queue)) == len(slots)
    scheduler = await queue.get_job_scheduler("until")
    assert scheduler is not None and scheduler.next_run is None


async def test_immediately_runs_one_job_now_then_keeps_to_the_schedule(
    queue: Queue, redis: aioredis.Redis
) -> None:
    before = await redis_ms(redis)
    await queue.upsert_job_scheduler("now", every=3_600_000, immediately=True)
    [job] = await queue.get_jobs("waiting")
    assert slot_of(job.id) >= before
    scheduler = await queue.get_job_scheduler("now")
    assert scheduler is not None and scheduler.next_run is not None
    assert round(scheduler.next_run.timestamp() * 1000) % 3_600_000 == 0


async def test_start_date_sets_the_first_slot_and_the_phase(queue: Queue) -> None:
    start = datetime(2031, 1, 1, 8, 0, 7, tzinfo=UTC)
    scheduler = await queue.upsert_job_scheduler(
        "later", every=timedelta(minutes=5), start_date=start
    )
    assert scheduler.next_run == start
    assert scheduler.start_date == start and scheduler.every == 300_000
    [job] = await queue.get_jobs("delayed")
    assert slot_of(job.id) == round(start.timestamp() * 1000)


# -- time zones -----------------------------------------------------------------


def _utc(month: int, day: int, hour: int) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # clocks go forward on 2025-03-30: 09:00 CET = 08:00 UTC, then CEST = 07:00 UTC
        (_utc(3, 28, 12), [_utc(3, 29, 8), _utc(3, 30, 7), _utc(3, 31, 7), _utc(4, 1, 7)]),
        # clocks go back on 2025-10-26: 09:00 CEST = 07:00 UTC, then CET = 08:00 UTC
        (_utc(10, 24, 12), [_utc(10, 25, 7), _utc(10, 26, 8), _utc(10, 27, 8), _utc(10, 28, 8)]),
    ],
)
def test_daily_cron_stays_at_local_time_across_dst(
    after: datetime, expected: list[datetime]
) -> None:
    runs = []
    for _ in range(4):
        after = next_cron_time("0 9 * * *", after, "Europe/Berlin")
        runs.append(after)
    assert [r.astimezone(UTC) for r in runs] == expected
    assert [r.astimezone(BERLIN).hour for r in runs] == [9, 9, 9, 9]


def test_fixed_hour_runs_once_on_the_night_clocks_go_back() -> None:
    after = datetime(2025, 10, 25, 12, tzinfo=UTC)
    first = next_cron_time("30 2 * * *", after, "Europe/Berlin")
    second = next_cron_time("30 2 * * *", first, "Europe/Berlin")
    # (compared in UTC: == across zones is always False for a time in the fold)
    assert first.astimezone(UTC) == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert second.astimezone(UTC) == datetime(2025, 10, 27, 1, 30, tzinfo=UTC)  # 02:30 CET
    # An hourly schedule runs through the repeated hour.
    t = datetime(2025, 10, 26, 0, 45, tzinfo=UTC)  # 02:45 CEST
    hourly = []
    for _ in range(3):
        t = next_cron_time("0 * * * *", t, "Europe/Berlin")
        hourly.append(t.astimezone(UTC).hour)
    assert hourly == [1, 2, 3]  # 02:00 CET (the repeat), 03:00, 04:00


async def test_upserted_cron_next_run_is_local_time_after_a_dst_change(queue: Queue) -> None:
    start = datetime(2031, 3, 29, 12, tzinfo=UTC)  # Berlin goes to summer time on the 30th
    scheduler = await queue.upsert_job_scheduler(
        "morning", cron="0 9 * * *", tz="Europe/Berlin", start_date=start
    )
    assert scheduler.next_run == datetime(2031, 3, 30, 7, 0, tzinfo=UTC)
    assert scheduler.next_run.astimezone(BERLIN).hour == 9


# -- missed slots ---------------------------------------------------------------


async def _ran_and_gone(queue: Queue, redis: aioredis.Redis, job_id: str) -> None:
    """As if the job ran and remove_on_complete deleted it (remove() refuses a
    scheduler's pending job)."""
    k = queue.keys
    await redis.lrem(k.wait, 0, job_id)
    await redis.zrem(k.delayed, job_id)
    await redis.delete(k.job(job_id))


async def _down_for_five_slots(queue: Queue, redis: aioredis.Redis, scheduler_id: str,
                               missed: str) -> tuple[str, int]:
    """A scheduler (every 1 s) whose workers were all down over its last five slots:
    its last job was due at t0 and the next slots t0+1s..t0+5s have passed.
    Returns (the last job's id, t0)."""
    await queue.upsert_job_scheduler(scheduler_id, every=1000, missed=missed)
    now = await redis_ms(redis)
    t0 = now - now % 1000 - 5000
    [pending] = await all_job_ids(queue)
    await _ran_and_gone(queue, redis, pending)
    last = f"sched-{scheduler_id}-{t0}"
    await queue.add("x", job_id=last, delay=0)  # the job made for t0, still waiting
    await redis.hset(queue.keys.scheduler(scheduler_id),
                     mapping={"cur": t0, "nxt": t0 + 1000, "pend": last})
    return last, t0


async def test_missed_run_once_waiting_job_stands_for_the_missed_slots(
    queue: Queue, redis: aioredis.Redis
) -> None:
    last, t0 = await _down_for_five_slots(queue, redis, "daily", "run_once")
    await advance_job_scheduler(queue, "daily")

    [waiting] = await queue.get_jobs("waiting")
    assert waiting.id == last  # no catch-up job: the waiting one has yet to run
    [future] = await queue.get_jobs("delayed")
    assert slot_of(future.id) > t0 + 5000  # back on schedule


async def test_missed_run_once_makes_one_job_when_the_last_one_already_ran(
    queue: Queue, redis: aioredis.Redis
) -> None:
    last, t0 = await _down_for_five_slots(queue, redis, "daily", "run_once")
    await _ran_and_gone(queue, redis, last)
    await advance_job_scheduler(queue, "daily")

    [catch_up] = await queue.get_jobs("waiting")
    assert catch_up.id == f"sched-daily-{t0 + 1000}"  # one job for the five slots
    [future] = await queue.get_jobs("delayed")
    assert slot_of(future.id) > t0 + 5000
    assert future.delay > 0


async def test_missed_run_all_makes_one_job_per_missed_slot(
    queue: Queue, redis: aioredis.Redis
) -> None:
    _, t0 = await _down_for_five_slots(queue, redis, "each", "run_all")
    await advance_job_scheduler(queue, "each")

    waiting = sorted(slot_of(job.id) for job in await queue.get_jobs("waiting"))
    assert waiting[:6] == [t0 + i * 1000 for i in range(6)]  # t0's job + five missed
    [future] = await queue.get_jobs("delayed")
    assert slot_of(future.id) == waiting[-1] + 1000


# -- the template, the sync client, the idle cost --------------------------------


async def test_job_options_of_the_template_apply(
    queue: Queue, start_worker: StartWorker
) -> None:
    calls: list[int] = []

    async def flaky(job: Job) -> str:
        calls.append(job.attempts_made)
        if job.attempts_made == 0:
            raise RuntimeError("first try fails")
        return "ok"

    await queue.upsert_job_scheduler(
        "retrying", every=3_600_000, immediately=True, attempts=2, backoff=50, priority=5,
    )
    [job] = await queue.get_jobs("prioritized")
    assert (job.opts.attempts, job.opts.priority) == (2, 5)
    start_worker(flaky)
    assert await job.wait_until_finished(timeout=10) == "ok"
    assert calls == [0, 1]


def test_sync_queue_upserts_lists_and_removes(redis_url: str, queue_name: str) -> None:
    with SyncQueue(queue_name, redis_url) as q:
        made = q.upsert_job_scheduler(
            "nightly", cron="0 3 * * *", tz="America/New_York", data={"k": 1},
            remove_on_complete=True,
        )
        assert isinstance(made, JobScheduler)
        assert made.next_run is not None and made.next_run.astimezone(
            ZoneInfo("America/New_York")).hour == 3
        [listed] = q.get_job_schedulers()
        assert (listed.id, listed.tz, listed.data) == ("nightly", "America/New_York", {"k": 1})
        assert listed.opts.remove_on_complete.count == 0
        assert q.get_job_scheduler("nightly") == listed
        assert q.remove_job_scheduler("nightly") is True
        assert q.get_job_schedulers() == []
        assert q.get_job_counts("delayed") == {"delayed": 0}


@pytest.mark.cluster(False)  # slow, and nothing cluster-specific
async def test_idle_worker_with_a_scheduler_costs_under_one_command_per_second() -> None:
    # A server of its own: nothing another test left running (a worker still
    # stopping, a process) can add its commands to the count.
    with RedisServer() as server:
        redis = aioredis.Redis.from_url(server.url)
        try:
            async with Queue("idle", server.url) as queue:
                await queue.upsert_job_scheduler("daily", cron="0 4 * * *")
                drained = asyncio.Event()
                # The stalled check (a script every 30 s, with or without schedulers)
                # is pushed out of the window; what is left is the idle fetch loop
                # and the scheduler loop.
                worker = Worker("idle", Recorder(), connection=server.url,
                                handle_signals=False, stalled_interval=600_000)
                worker.on("drained", drained.set)
                async with running(worker):
                    await wait_for(drained.is_set)
                    before = await _calls(redis)
                    t0 = await redis_ms(redis)
                    await wait_until_redis_ms(redis, t0 + 11_000)
                    after = await _calls(redis)
        finally:
            await redis.aclose()
    spent = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    spent.pop("info", None)
    spent.pop("time", None)  # our own clock reads
    assert sum(spent.values()) / 11 < 1, spent
    # The scheduler loop itself: one blocking wait (and one read) per 30 s when idle.
    assert spent.get("zrange", 0) <= 1, spent


async def _calls(redis: aioredis.Redis) -> dict[str, int]:
    info = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


# -- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "every"),
        ({"every": 1000, "cron": "* * * * *"}, "every"),
        ({"every": -5}, "every"),
        ({"every": 0}, "every"),
        ({"every": "1s"}, "every"),
        ({"cron": "* * * *"}, "cron"),
        ({"cron": "* * * * * * *"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "R * * * *"}, "cron"),
        ({"cron": "0 0 30 2 *"}, "cron"),
        ({"cron": "0 9 * * *", "tz": "Mars/Olympus"}, "tz"),
        ({"every": 1000, "start_date": datetime(2030, 1, 1)}, "start_date"),
        ({"every": 1000, "end_date": datetime(2001, 1, 1, tzinfo=UTC)}, "end_date"),
        ({"every": 1000, "start_date": 2_000_000_000_000, "end_date": 1_900_000_000_000},
         "end_date"),
        ({"every": 1000, "limit": 0}, "limit"),
        ({"every": 1000, "missed": "skip"}, "missed"),
        ({"every": 1000, "delay": 5}, "delay"),
        ({"every": 1000, "job_id": "x"}, "job_id"),
        ({"every": 1000, "attempts": 0}, "attempts"),
        ({"every": 1000, "colour": "red"}, "colour"),
        ({"every": 1000, "data": {1, 2}}, "data"),
        ({"every": 1000, "job_name": 7}, "job_name"),
    ],
)
async def test_bad_input_is_refused_naming_the_field(
    queue: Queue, redis: aioredis.Redis, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.upsert_job_scheduler("s", **kwargs)
    assert info.value.field == field
    assert await redis.keys(queue.keys.base + "*") == []  # nothing written


@pytest.mark.parametrize("scheduler_id", ["", "a:b", "x" * 201, 5])
async def test_bad_scheduler_id_is_refused(queue: Queue, scheduler_id: Any) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.upsert_job_scheduler(scheduler_id, every=1000)
    assert info.value.field == "scheduler_id"


async def test_a_scheduler_job_joins_its_group(queue: Queue) -> None:
    await queue.upsert_job_scheduler("tenant-sync", every=60_000, immediately=True,
                                     group="tenant-9")
    [group] = await queue.get_groups()
    assert group.name == "tenant-9" and group.waiting == 1


async def test_deduplication_is_not_a_scheduler_option(queue: Queue) -> None:
    with pytest.raises(ValidationError) as err:
        await queue.upsert_job_scheduler("s", every=1000, deduplication={"id": "x"})
    assert err.value.field == "deduplication"
