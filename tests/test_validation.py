"""Bad input is refused with a ValidationError naming the field, before Redis is touched."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from conveyor import ConveyorError, JobOptions, Queue, ValidationError, Worker
from conveyor.options import MAX_PRIORITY

TEN_YEARS_MS = 3_652 * 86_400_000 + 12 * 3_600_000  # 10 * 365.25 days


class NotJson:
    pass


BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"delay": -1}, "delay"),
    ({"delay": timedelta(seconds=-1)}, "delay"),
    ({"delay": "soon"}, "delay"),
    ({"delay": 1.5}, "delay"),
    ({"attempts": 0}, "attempts"),
    ({"attempts": -3}, "attempts"),
    ({"attempts": 2.0}, "attempts"),
    ({"attempts": True}, "attempts"),
    ({"backoff": {"type": "linear", "delay": 100}}, "backoff.type"),
    ({"backoff": {"type": "fixed", "delay": -5}}, "backoff.delay"),
    ({"backoff": {"type": "fixed", "jitter": 2}}, "backoff.jitter"),
    ({"backoff": {"typ": "fixed"}}, "backoff"),
    ({"backoff": "exponential"}, "backoff"),
    ({"backoff": -100}, "backoff"),
    ({"priority": -1}, "priority"),
    ({"priority": MAX_PRIORITY + 1}, "priority"),
    ({"priority": 1.0}, "priority"),
    ({"priority": True}, "priority"),
    ({"lifo": 1}, "lifo"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": -10}, "timeout"),
    ({"job_id": "x" * 256}, "job_id"),
    ({"job_id": 1.5}, "job_id"),
    ({"remove_on_complete": -1}, "remove_on_complete"),
    ({"remove_on_complete": "yes"}, "remove_on_complete"),
    ({"remove_on_complete": 1.5}, "remove_on_complete"),
    ({"remove_on_complete": {"cnt": 3}}, "remove_on_complete"),
    ({"remove_on_complete": {"count": -1}}, "remove_on_complete.count"),
    ({"remove_on_complete": {"count": "3"}}, "remove_on_complete.count"),
    ({"remove_on_complete": {"age": -1}}, "remove_on_complete.age"),
    ({"remove_on_complete": {"age": "1h"}}, "remove_on_complete.age"),
    ({"remove_on_fail": -2}, "remove_on_fail"),
    ({"remove_on_fail": [1]}, "remove_on_fail"),
    ({"remove_on_fail": {"age": 1, "keep": 1}}, "remove_on_fail"),
    # numbers that overflow, are not finite, or are absurd (more than ~10 years, 2**31 - 1)
    ({"delay": 10**20}, "delay"),
    ({"delay": TEN_YEARS_MS + 1}, "delay"),
    ({"delay": timedelta.max}, "delay"),
    ({"delay": float("inf")}, "delay"),
    ({"delay": float("nan")}, "delay"),
    ({"delay": 1e300}, "delay"),
    ({"attempts": 2**31}, "attempts"),
    ({"attempts": 10**30}, "attempts"),
    ({"backoff": 10**20}, "backoff"),
    ({"backoff": {"type": "exponential", "delay": 10**20}}, "backoff.delay"),
    ({"backoff": {"type": "fixed", "jitter": float("nan")}}, "backoff.jitter"),
    ({"timeout": 10**20}, "timeout"),
    ({"deduplication": {"id": "d", "ttl": 10**20}}, "deduplication.ttl"),
    ({"remove_on_complete": {"age": float("inf")}}, "remove_on_complete.age"),
    ({"remove_on_complete": {"age": float("nan")}}, "remove_on_complete.age"),
    ({"remove_on_fail": {"age": 1e300}}, "remove_on_fail.age"),
    ({"remove_on_fail": {"age": 10**20}}, "remove_on_fail.age"),
    ({"remove_on_fail": 2**31}, "remove_on_fail"),
    ({"remove_on_complete": {"count": 10**30}}, "remove_on_complete.count"),
]


def _check(exc: ValidationError, field: str) -> None:
    assert isinstance(exc, ValidationError)
    assert isinstance(exc, ValueError)
    assert isinstance(exc, ConveyorError)
    assert exc.field == field
    assert str(exc).startswith(f"{field}: ")


@pytest.mark.parametrize(("options", "field"), BAD_OPTIONS)
async def test_bad_option_is_refused_before_redis(
    queue: Queue, redis: aioredis.Redis, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.add("job", {"k": 1}, **options)
    _check(info.value, field)
    assert await redis.keys("*") == []


@pytest.mark.parametrize(("options", "field"), BAD_OPTIONS)
async def test_bad_option_in_bulk_names_the_item(
    queue: Queue, redis: aioredis.Redis, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.add_bulk([{"name": "ok"}, {"name": "job", **options}])
    _check(info.value, f"jobs[1].{field}")
    assert await redis.keys("*") == []


@pytest.mark.parametrize(("options", "field"), BAD_OPTIONS)
def test_bad_default_job_option_is_refused(
    redis_url: str, queue_name: str, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Queue(queue_name, redis_url, default_job_options=options)
    _check(info.value, field)


@pytest.mark.parametrize(
    "data",
    [
        {"when": NotJson()},
        {1, 2, 3},
        {"bytes": b"\x00\x01"},
        {1: "int keys"},
        2**70,
    ],
    ids=["object", "set", "bytes", "int-keys", "huge-int"],
)
async def test_data_that_is_not_json_is_refused(
    queue: Queue, redis: aioredis.Redis, data: Any
) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.add("job", data)
    _check(info.value, "data")
    assert "JSON" in str(info.value)
    assert await redis.keys("*") == []


async def test_oversize_data_is_refused(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url, max_data_bytes=100) as queue:
        with pytest.raises(ValidationError) as info:
            await queue.add("big", "x" * 200)
        _check(info.value, "data")
        assert "100" in str(info.value)
        assert await redis.keys("*") == []
        # At the limit is fine: '"' + 98 chars + '"' is exactly 100 bytes.
        job = await queue.add("fits", "x" * 98)
        assert job.data == "x" * 98


async def test_default_max_data_bytes_is_one_mebibyte(
    queue: Queue, redis: aioredis.Redis
) -> None:
    assert queue.max_data_bytes == 1024 * 1024
    with pytest.raises(ValidationError) as info:
        await queue.add("big", "x" * (1024 * 1024))
    _check(info.value, "data")
    assert await redis.keys("*") == []


@pytest.mark.parametrize(
    "name",
    ["", "a" * 201, "has:colon", "has{brace", "has}brace", "{tag}", "with space", "tab\t",
     None, 5],
    ids=["empty", "too-long", "colon", "open-brace", "close-brace", "tag", "space", "tab",
         "none", "int"],
)
async def test_bad_queue_name_is_refused(
    redis_url: str, redis: aioredis.Redis, name: Any
) -> None:
    with pytest.raises(ValidationError) as info:
        Queue(name, redis_url)
    _check(info.value, "name")
    assert await redis.keys("*") == []


async def test_longest_allowed_queue_name(redis_url: str) -> None:
    async with Queue("a" * 200, redis_url) as queue:
        job = await queue.add("x")
        assert await queue.get_job_state(job.id) == "waiting"


@pytest.mark.parametrize("prefix", ["", "a{b", "c}"])
def test_bad_prefix_is_refused(redis_url: str, queue_name: str, prefix: str) -> None:
    with pytest.raises(ValidationError) as info:
        Queue(queue_name, redis_url, prefix=prefix)
    _check(info.value, "prefix")


@pytest.mark.parametrize("prefix", [5, None, b"conveyor"])
def test_a_prefix_that_is_not_a_string_is_refused_alike_everywhere(
    redis_url: str, queue_name: str, prefix: object,
) -> None:
    from conveyor import Conveyor, FlowProducer
    from conveyor.inspection import Inspector

    makers = [
        lambda: Queue(queue_name, redis_url, prefix=prefix),  # type: ignore[arg-type]
        lambda: FlowProducer(redis_url, prefix=prefix),  # type: ignore[arg-type]
        lambda: Inspector(redis_url, prefix=prefix),  # type: ignore[arg-type]
        lambda: Conveyor(redis_url, prefix=prefix),  # type: ignore[arg-type]
    ]
    for make in makers:
        with pytest.raises(ValidationError) as info:
            make()
        _check(info.value, "prefix")


async def test_job_name_must_be_a_string(queue: Queue, redis: aioredis.Redis) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.add(123, {})  # type: ignore[arg-type]
    _check(info.value, "name")
    assert await redis.keys("*") == []


async def test_unknown_option_to_add_is_a_type_error(queue: Queue, redis: aioredis.Redis) -> None:
    with pytest.raises(TypeError, match="colour"):
        await queue.add("job", {}, colour="red")  # type: ignore[call-arg]
    assert await redis.keys("*") == []


async def test_unknown_option_in_bulk_or_defaults_is_a_validation_error(
    queue: Queue, redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.add_bulk([{"name": "job", "colour": "red"}])
    _check(info.value, "jobs[0].colour")
    with pytest.raises(ValidationError) as info:
        Queue(queue_name, redis_url, default_job_options={"colour": "red"})
    _check(info.value, "colour")
    with pytest.raises(ValidationError) as info:
        JobOptions.parse({"colour": "red"})
    _check(info.value, "colour")
    assert await redis.keys("*") == []


@pytest.mark.parametrize(
    "options",
    [
        {"priority": MAX_PRIORITY},
        {"priority": 0},
        {"delay": 0},
        {"delay": timedelta(milliseconds=1500)},
        {"attempts": 1},
        {"backoff": 0},
        {"backoff": timedelta(seconds=1)},
        {"backoff": {"type": "exponential", "delay": 10, "jitter": 0.5}},
        {"backoff": {"type": "custom"}},
        {"timeout": timedelta(seconds=1)},
        {"remove_on_complete": True},
        {"remove_on_complete": False},
        {"remove_on_complete": 0},
        {"remove_on_complete": {"age": 60}},
        {"remove_on_complete": {"age": 0.5, "count": 3}},
        {"remove_on_fail": {}},
        {"job_id": "x" * 255},
        {"delay": TEN_YEARS_MS},
        {"delay": timedelta(days=3652)},
        {"attempts": 2**31 - 1},
        {"backoff": {"type": "exponential", "delay": TEN_YEARS_MS}},
        {"timeout": TEN_YEARS_MS},
        {"deduplication": {"id": "d", "ttl": TEN_YEARS_MS}},
        {"remove_on_fail": {"age": TEN_YEARS_MS / 1000, "count": 2**31 - 1}},
    ],
)
async def test_edge_values_are_accepted(queue: Queue, options: dict[str, Any]) -> None:
    job = await queue.add("job", **options)
    assert await queue.get_job(job.id) is not None


async def test_timedelta_durations_become_milliseconds(queue: Queue) -> None:
    job = await queue.add(
        "job", delay=timedelta(seconds=2), timeout=timedelta(milliseconds=250),
        backoff=timedelta(seconds=3),
    )
    assert job.opts.delay == 2_000
    assert job.opts.timeout == 250
    assert job.opts.backoff is not None and job.opts.backoff.delay == 3_000


async def test_bad_state_name_is_refused(queue: Queue) -> None:
    with pytest.raises(ValueError, match="state"):
        await queue.get_job_counts("running")
    with pytest.raises(ValueError, match="state"):
        await queue.get_jobs("running")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda q: q.clean(0, limit=2**31), "limit"),
        (lambda q: q.clean(TEN_YEARS_MS + 1), "grace_ms"),
        (lambda q: q.retry_jobs(count=10**30), "count"),
        (lambda q: q.promote_jobs(count=10**30), "count"),
        (lambda q: q.get_dead_letter(0, 10**30), "end"),
        (lambda q: q.get_jobs("waiting", 10**30), "start"),
        (lambda q: q.get_workers(-(10**30)), "start"),
        (lambda q: q.rate_limit(10**20), "delay"),
        (lambda q: q.set_global_concurrency(10**30), "n"),
        (lambda q: q.set_group_concurrency(10**30), "n"),
        (lambda q: q.set_group_limit(10**30), "max"),
        (lambda q: q.set_group_limit(5, 10**20), "duration"),
        (lambda q: q.upsert_job_scheduler("s", every=10**20), "every"),
        (lambda q: q.upsert_job_scheduler("s", every=1000, limit=10**30), "limit"),
        (lambda q: q.upsert_job_scheduler("s", every=1000, end_date=10**20), "end_date"),
        (lambda q: q.upsert_job_scheduler("s", every=1000, start_date=10**20), "start_date"),
    ],
    ids=["clean-limit", "clean-grace", "retry-count", "promote-count", "dead-letter-end",
         "get-jobs-start",
         "workers-start", "rate-limit", "global-concurrency", "group-concurrency",
         "group-limit", "group-limit-duration", "every", "scheduler-limit", "end-date",
         "start-date"],
)
async def test_admin_numbers_out_of_bounds_are_refused(
    queue: Queue, redis: aioredis.Redis, call: Any, field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await call(queue)
    _check(info.value, field)
    assert await redis.keys("*") == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"events_maxlen": -1}, "events_maxlen"),
        ({"events_maxlen": 10**30}, "events_maxlen"),
        ({"keep_logs": 10**30}, "keep_logs"),
        ({"max_data_bytes": -5}, "max_data_bytes"),
    ],
)
def test_queue_numbers_out_of_bounds_are_refused(
    redis_url: str, queue_name: str, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Queue(queue_name, redis_url, **options)
    _check(info.value, field)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"concurrency": 10**30}, "concurrency"),
        ({"max_stalled_count": 2**31}, "max_stalled_count"),
        ({"lock_duration": 10**20}, "lock_duration"),
        ({"limiter": {"max": 10**30}}, "limiter.max"),
        ({"events_maxlen": -1}, "events_maxlen"),
    ],
)
def test_worker_numbers_out_of_bounds_are_refused(
    redis_url: str, queue_name: str, options: dict[str, Any], field: str
) -> None:
    async def process(job: Any) -> None:
        return None

    with pytest.raises(ValidationError) as info:
        Worker(queue_name, process, connection=redis_url, **options)
    _check(info.value, field)
