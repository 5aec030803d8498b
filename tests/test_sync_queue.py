"""conveyor.sync: the blocking Queue for plain synchronous code, and SyncJob."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import pytest
import redis as redis_sync

from conveyor import (
    Job,
    JobFailedError,
    JobNotFoundError,
    JobStateError,
    SyncJob,
    ValidationError,
    WaitTimeoutError,
    Worker,
)
from conveyor import Queue as AsyncQueue
from conveyor.sync import Queue
from helpers import wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


@pytest.fixture
def queue(redis_url: str, queue_name: str) -> Iterator[Queue]:
    with Queue(queue_name, redis_url) as q:
        yield q


@pytest.fixture
def client(redis_url: str, backend: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A plain blocking client (on the cluster, a RedisCluster one)."""
    if backend == "cluster":
        from redis.cluster import RedisCluster as RedisClusterClient

        port = request.getfixturevalue("redis_cluster").ports[0]
        with RedisClusterClient(host="127.0.0.1", port=port) as c:
            yield c
    else:
        with redis_sync.Redis.from_url(redis_url) as c:
            yield c


class ThreadedWorker:
    """A Worker running on its own event loop in a background thread, for sync tests."""

    def __init__(self, queue_name: str, processor: Callable[..., Any], url: str) -> None:
        self.queue_name = queue_name
        self.processor = processor
        self.url = url
        self.ready = threading.Event()
        self.drained = threading.Event()  # set when the worker found nothing to start
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._thread, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.worker: Worker | None = None

    def _thread(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.worker = Worker(self.queue_name, self.processor, connection=self.url)
        self.worker.on("drained", self.drained.set)
        self.ready.set()
        await self.worker.run()

    def __enter__(self) -> ThreadedWorker:
        self.thread.start()
        assert self.ready.wait(10), "worker thread did not start"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.loop is not None and self.worker is not None:
            asyncio.run_coroutine_threadsafe(self.worker.close(), self.loop).result(10)
        self.thread.join(10)
        assert not self.thread.is_alive(), "worker thread did not stop"
        if self.error is not None:
            raise self.error


async def echo_or_fail(job: Job) -> Any:
    if isinstance(job.data, dict) and "fail" in job.data:
        raise RuntimeError(job.data["fail"])
    return job.data


# -- the blocking queue, no worker -------------------------------------------------------


def test_add_and_read(queue: Queue, queue_name: str) -> None:
    assert queue.name == queue_name
    job = queue.add("email", {"to": "ada@example.com"}, attempts=2)
    assert isinstance(job, SyncJob)
    assert job.name == "email"
    assert job.data == {"to": "ada@example.com"}
    assert job.opts.attempts == 2
    assert job.timestamp > 0
    assert job.attempts_made == 0
    assert job.progress is None and job.return_value is None and job.failed_reason is None
    assert job.stacktrace == [] and job.processed_on is None and job.finished_on is None
    assert isinstance(job.job, Job)
    assert repr(job) == repr(job.job)

    found = queue.get_job(job.id)
    assert found is not None
    assert (found.id, found.name, found.data) == (job.id, "email", {"to": "ada@example.com"})
    assert queue.get_job("missing") is None
    assert queue.get_job_state(job.id) == "waiting"
    assert queue.get_job_state("missing") is None
    assert queue.get_job_counts("waiting", "failed") == {"waiting": 1, "failed": 0}
    assert queue.get_job_counts()["waiting"] == 1


def test_add_bulk_and_get_jobs(queue: Queue) -> None:
    jobs = queue.add_bulk([{"name": "a"}, {"name": "b"}, {"name": "p", "priority": 1}])
    assert all(isinstance(j, SyncJob) for j in jobs)
    assert [j.id for j in queue.get_jobs("waiting", asc=True)] == [jobs[0].id, jobs[1].id]
    assert [j.id for j in queue.get_jobs(["waiting", "prioritized"])] == [
        jobs[1].id, jobs[0].id, jobs[2].id
    ]
    assert [j.id for j in queue.get_jobs("waiting", 0, 0)] == [jobs[1].id]


def test_same_job_id_twice(queue: Queue) -> None:
    first = queue.add("a", 1, job_id="once")
    again = queue.add("b", 2, job_id="once")
    assert again.id == first.id == "once"
    assert again.data == 1
    assert queue.get_job_counts("waiting") == {"waiting": 1}


def test_an_empty_job_id_means_generate_one(queue: Queue) -> None:
    first = queue.add("a", 1, job_id="")
    [second] = queue.add_bulk([{"name": "b", "job_id": ""}])
    assert first.id and second.id and first.id != second.id
    assert queue.get_job_counts("waiting") == {"waiting": 2}


def test_validation_errors_surface(queue: Queue, client: redis_sync.Redis) -> None:
    with pytest.raises(ValidationError) as info:
        queue.add("x", priority=-1)
    assert info.value.field == "priority"
    with pytest.raises(ValidationError) as info:
        queue.add_bulk([{"name": "ok"}, {"name": "x", "attempts": 0}])
    assert info.value.field == "jobs[1].attempts"
    with pytest.raises(TypeError):
        queue.add("x", colour="red")
    assert client.keys("*") == []


def test_bad_queue_name(redis_url: str) -> None:
    with pytest.raises(ValidationError) as info:
        Queue("a:b", redis_url)
    assert info.value.field == "name"


def test_pause_resume(queue: Queue) -> None:
    assert queue.is_paused() is False
    queue.pause()
    assert queue.is_paused() is True
    job = queue.add("x")
    assert job.get_state() == "waiting"
    queue.resume()
    assert queue.is_paused() is False


def test_remove(queue: Queue) -> None:
    job = queue.add("x")
    assert queue.remove(job.id) is True
    assert queue.remove(job.id) is False
    other = queue.add("y", delay=60_000)
    other.remove()
    assert queue.get_job(other.id) is None
    assert other.get_state() is None


def test_sync_job_progress_and_logs(queue: Queue) -> None:
    job = queue.add("x")
    job.update_progress(30)
    assert job.progress == 30
    job.update_progress({"stage": "upload"})
    assert job.log("one") == 1
    assert job.log("two") == 2
    assert job.get_logs() == ["one", "two"]
    assert job.get_logs(1, 1) == ["two"]
    fresh = queue.get_job(job.id)
    assert fresh is not None and fresh.progress == {"stage": "upload"}
    with pytest.raises(ValidationError):
        job.update_progress("half")


def test_sync_job_refresh_and_missing(queue: Queue) -> None:
    job = queue.add("x")
    assert job.refresh() is job
    queue.remove(job.id)
    with pytest.raises(JobNotFoundError):
        job.refresh()
    with pytest.raises(JobNotFoundError):
        job.log("late")


def test_retry_refused_for_waiting_job(queue: Queue) -> None:
    job = queue.add("x")
    with pytest.raises(JobStateError):
        job.retry()
    with pytest.raises(JobNotFoundError):
        queue.retry_job("missing")


def test_update_data_of_a_job_that_has_not_started(queue: Queue) -> None:
    job = queue.add("x", {"v": 1}, delay=60_000)
    queue.update_data(job.id, {"v": 2})
    assert job.refresh().data == {"v": 2}
    with pytest.raises(JobNotFoundError):
        queue.update_data("missing", 1)


def test_wait_until_finished_times_out(queue: Queue) -> None:
    job = queue.add("x")
    with pytest.raises(WaitTimeoutError):
        job.wait_until_finished(timeout=0.2)


def test_queue_passes_options_through(redis_url: str, queue_name: str) -> None:
    with Queue(queue_name, redis_url, default_job_options={"attempts": 5},
               max_data_bytes=50) as queue:
        assert queue.add("x").opts.attempts == 5
        with pytest.raises(ValidationError) as info:
            queue.add("big", "x" * 100)
        assert info.value.field == "data"
        assert queue.queue.max_data_bytes == 50
        assert isinstance(queue.queue, AsyncQueue)


def test_close_twice_is_harmless(redis_url: str, queue_name: str) -> None:
    queue = Queue(queue_name, redis_url)
    queue.add("x")
    queue.close()
    queue.close()


# -- with a worker in a background thread ---------------------------------------------


def test_job_completed_by_a_worker(queue: Queue, redis_url: str, queue_name: str) -> None:
    job = queue.add("x", {"v": 1})
    with ThreadedWorker(queue_name, echo_or_fail, redis_url):
        assert job.wait_until_finished(timeout=10) == {"v": 1}
    assert job.refresh().return_value == {"v": 1}
    assert job.get_state() == "completed"
    assert job.finished_on is not None and job.processed_on is not None
    assert job.attempts_made == 1
    assert queue.get_job_counts("completed") == {"completed": 1}


def test_failed_job_and_retry(queue: Queue, redis_url: str, queue_name: str) -> None:
    job = queue.add("x", {"fail": "broken"})
    with ThreadedWorker(queue_name, echo_or_fail, redis_url):
        with pytest.raises(JobFailedError) as info:
            job.wait_until_finished(timeout=10)
        assert info.value.failed_reason == "RuntimeError: broken"
        job.refresh()
        assert job.failed_reason == "RuntimeError: broken"
        assert len(job.stacktrace) == 1
        assert job.get_state() == "failed"
        job.retry(reset_attempts=True)
        with pytest.raises(JobFailedError):
            job.wait_until_finished(timeout=10)
    assert job.refresh().attempts_made == 1


def test_paused_queue_holds_jobs_for_a_threaded_worker(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    queue.pause()
    job = queue.add("x", "held")
    with ThreadedWorker(queue_name, echo_or_fail, redis_url) as worker:
        # The worker looked at the queue (after the add) and found nothing it may start.
        assert worker.drained.wait(10), "worker never went idle"
        assert job.get_state() == "waiting"
        queue.resume()
        assert job.wait_until_finished(timeout=10) == "held"


# -- SyncJob as seen by a plain ``def`` processor -----------------------------------------


async def test_plain_def_processor_gets_a_sync_job(
    redis_url: str, queue_name: str
) -> None:
    seen: dict[str, Any] = {}

    def process(job: SyncJob) -> dict[str, Any]:
        assert isinstance(job, SyncJob)
        seen.update(id=job.id, name=job.name, data=job.data, thread=threading.get_ident(),
                    state=job.get_state(), attempts_made=job.attempts_made)
        job.update_progress(50)
        assert job.log("half way") == 1
        seen["logs"] = job.get_logs()
        seen["progress"] = job.refresh().progress
        return {"doubled": job.data * 2}

    async with AsyncQueue(queue_name, redis_url) as queue:
        job = await queue.add("double", 21)
        worker = Worker(queue_name, process, connection=redis_url)
        task = asyncio.create_task(worker.run())
        try:
            assert await job.wait_until_finished(timeout=10) == {"doubled": 42}
        finally:
            await worker.close()
            await task
        assert seen["id"] == job.id and seen["name"] == "double" and seen["data"] == 21
        assert seen["thread"] != threading.get_ident()  # ran off the event loop
        assert seen["state"] == "active"
        assert seen["attempts_made"] == 0
        assert seen["logs"] == ["half way"]
        assert seen["progress"] == 50
        assert await job.get_logs() == ["half way"]
        await wait_for(lambda: _state_is(queue, job.id, "completed"))


async def _state_is(queue: AsyncQueue, job_id: str, state: str) -> bool:
    return await queue.get_job_state(job_id) == state


# -- adding without the background loop -------------------------------------------------


def test_add_does_not_need_the_background_loop(queue: Queue) -> None:
    # Producers in web requests add jobs on a blocking client of their own: even
    # with the background loop busy, add() and add_bulk() answer.
    loop_free = threading.Event()
    queue._loop.call_soon_threadsafe(loop_free.wait, 10)
    try:
        job = queue.add("while busy", {"n": 1}, priority=2)
        [bulk] = queue.add_bulk([{"name": "bulk while busy", "delay": 60_000}])
    finally:
        loop_free.set()
    assert queue.get_job_state(job.id) == "prioritized"
    assert queue.get_job_state(bulk.id) == "delayed"
    assert queue.get_job(job.id).data == {"n": 1}  # type: ignore[union-attr]


def test_add_bulk_larger_than_one_script_call(queue: Queue, client: redis_sync.Redis) -> None:
    specs: list[dict[str, Any]] = [{"name": "n", "data": i} for i in range(2_100)]
    specs[2_050]["job_id"] = specs[10]["job_id"] = "same"
    jobs = queue.add_bulk(specs)

    assert [j.data for j in jobs[:3]] == [0, 1, 2]
    assert jobs[2_050].id == "same" and jobs[2_050].data == 10  # the job that exists
    waiting = [i.decode() for i in client.lrange(queue.queue.keys.wait, 0, -1)]
    assert waiting == [j.id for j in jobs[:2_050]] + [j.id for j in jobs[2_051:]]


@pytest.mark.cluster(False)  # builds a client from a plain URL
def test_queue_on_an_asyncio_client_adds_through_the_loop(
    redis_url: str, queue_name: str
) -> None:
    import redis.asyncio as aioredis

    from conveyor.sync import _run

    client = aioredis.Redis.from_url(redis_url)  # used on the background loop only
    with Queue(queue_name, client) as queue:
        try:
            job = queue.add("x", 1, job_id="a")
            again = queue.add("y", 2, job_id="a")
            assert (job.id, again.data) == ("a", 1)
            [bulk] = queue.add_bulk([{"name": "b"}])
            assert queue.get_job_state(bulk.id) == "waiting"
        finally:
            _run(queue._loop, client.aclose())


def test_limits_groups_deduplication_and_cancel_from_blocking_code(queue: Queue) -> None:
    queue.set_global_concurrency(3)
    assert queue.get_global_concurrency() == 3
    queue.set_global_concurrency(None)
    assert queue.get_global_concurrency() is None
    queue.rate_limit(10)

    first = queue.add("x", deduplication={"id": "k"})
    assert queue.add("x", deduplication={"id": "k"}).id == first.id
    assert queue.get_deduplication_job_id("k") == first.id
    assert queue.remove_deduplication_key("k") is True

    grouped = queue.add("g", group="tenant")
    queue.set_group_concurrency(2)
    queue.set_group_limit(5, 1000)
    [group] = queue.get_groups()
    assert (group.name, group.waiting) == ("tenant", 1)
    assert queue.get_group_jobs("tenant") == [grouped.id]

    assert queue.cancel(grouped.id, "no longer needed") is True
    assert queue.get_job(grouped.id) is None
    assert queue.get_metrics("completed").total == 0
    assert queue.get_timings(1).processing.count == 0


def test_a_sync_queue_from_a_url_takes_adds_from_more_threads_than_connections(
    queue: Queue,
) -> None:
    start = threading.Barrier(150)
    errors: list[BaseException] = []

    def add(i: int) -> None:
        start.wait()
        try:
            queue.add("t", i)
        except BaseException as exc:  # the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(150)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert queue.get_job_counts("waiting") == {"waiting": 150}
