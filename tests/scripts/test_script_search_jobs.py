"""search_jobs.lua: one bounded step through a state's ids, filters read inside
Redis, a cursor that survives its job leaving; nothing written."""

from __future__ import annotations

from script_support import QueueState, add, s

from conveyor import Queue

START = (None, "", "", "")


async def step(queue: Queue, key: str, cursor: tuple[int | None, str, str, str] = START,
               most_ids: int = 100, most_matches: int = 100, most_bytes: int = 1 << 20,
               filters: bytes = b"{}") -> list[object]:
    reply = await queue.scripts.search_jobs(key, key == queue.keys.wait, cursor, most_ids,
                                            most_matches, most_bytes, filters)
    return [s(part) for part in reply]


async def test_a_step_reports_matches_and_where_it_stopped_without_writing(
    queue: Queue, state: QueueState
) -> None:
    for n in range(5):
        await add(queue, f"j{n}", name="mail" if n % 2 else "sms", data=b'{"n":%d}' % n)
    before = await state.snapshot()
    matches, more, position, score, last, following, examined, total = await step(
        queue, queue.keys.wait, most_ids=3, filters=b'{"name":"mail"}')
    # Newest (the tail) first: j4, j3, j2 examined; j3 matched.
    assert (matches, more, position, score, last, following) == (
        ["j3", ""], 1, -3, "", "j2", "j1")
    assert (examined, total) == (3, 5)
    matches, more, *_, examined, total = await step(
        queue, queue.keys.wait, (-3, "", "j2", "j1"), filters=b'{"path":["n"],"value":1}')
    assert (matches, more, examined) == (["j1", ""], 0, 2)
    assert await state.snapshot() == before


async def test_a_sorted_set_cursor_whose_job_left_goes_on_after_its_score(
    queue: Queue, state: QueueState
) -> None:
    for job_id, delay in (("a", 10_000), ("b", 20_000), ("c", 30_000), ("d", 40_000)):
        await add(queue, job_id, delay=delay)
    matches, more, position, score, last, *_ = await step(queue, queue.keys.delayed, most_ids=2)
    assert (matches[0::2], more, position, last) == (["d", "c"], 1, 1, "c")
    await state.redis.zrem(queue.keys.delayed, "c")
    matches, more, *_ = await step(queue, queue.keys.delayed, (position, score, last, ""))
    assert (matches[0::2], more) == (["b", "a"], 0)


async def test_the_byte_budget_ends_a_step_after_at_least_one_job(queue: Queue) -> None:
    await add(queue, "big", data=b'{"s":"' + b"x" * 5000 + b'"}')
    await add(queue, "small", data=b'{"s":"y"}')
    filters = b'{"text":"y"}'
    matches, more, _, _, last, _, examined, _ = await step(
        queue, queue.keys.wait, most_bytes=100, filters=filters)
    assert (matches, more, last, examined) == (["small", ""], 1, "small", 1)
    matches, more, *_, examined, _ = await step(
        queue, queue.keys.wait, (-1, "", "small", "big"), most_bytes=100, filters=filters)
    assert (matches, more, examined) == ([], 0, 1)  # the big one alone, over the budget


async def test_ties_of_a_gone_cursor_are_skipped_by_their_bytes(
    queue: Queue, state: QueueState
) -> None:
    # Jobs finished in the same ms: a tie, ordered by id, descending ("B" < "a" in bytes).
    ids = ["B", "a", "b", "c", "d"]
    for job_id in ids:
        await state.redis.hset(queue.keys.job(job_id), "name", "x")
    await state.redis.zadd(queue.keys.completed, dict.fromkeys(ids, 5))
    matches, more, position, score, last, *_ = await step(queue, queue.keys.completed,
                                                          most_ids=2)
    assert (matches[0::2], more, position, score, last) == (["d", "c"], 1, 1, "5", "c")
    await state.redis.zrem(queue.keys.completed, "c")
    matches, more, *_ = await step(queue, queue.keys.completed, (position, score, last, ""))
    assert (matches[0::2], more) == (["b", "a", "B"], 0)
