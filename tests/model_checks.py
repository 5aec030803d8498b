"""The checks tests/test_model.py runs after every step: the real queues (read
straight from Redis) against the model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.keys import delayed_due

if TYPE_CHECKING:
    from test_model import QueueMachine

FIXED_PARTS = frozenset({
    "id", "wait", "prioritized", "pc", "delayed", "active", "locks", "completed", "failed",
    "meta", "marker", "events", "stalled-check", "waiting-children", "limiter", "cancels",
})
JOB_SUFFIXES = ("", ":logs", ":dependencies", ":processed", ":failed")


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def check(m: QueueMachine) -> None:
    model = m.model
    for q, queue in enumerate(m.queues):
        k = queue.keys
        async with m.client.pipeline(transaction=False) as pipe:
            pipe.lrange(k.wait, 0, -1)
            pipe.zrange(k.prioritized, 0, -1)
            pipe.zrange(k.delayed, 0, -1, withscores=True)
            for state in ("active", "completed", "failed", "waiting-children"):
                pipe.zrange(k.state_key(state), 0, -1)
            wait, prio, delayed, *others = await pipe.execute()
        wait, prio = [text(i) for i in wait], [text(i) for i in prio]
        mq = model.queues[q]
        assert wait == mq.wait, f"queue {q} wait list {wait}, the model says {mq.wait}"
        assert prio == mq.prioritized, f"queue {q} prioritized {prio}, model {mq.prioritized}"
        order = model.delayed_order(q)
        got_delayed = [text(i) for i, _ in delayed]
        if 1 in m.known:  # ties in any order
            assert sorted(got_delayed) == sorted(j.ref[1] for j in order)
            dues = [model.jobs[(q, i)].due for i in got_delayed]
            assert dues == sorted(dues), f"queue {q} delayed {got_delayed} not by due time"
        else:
            assert got_delayed == [j.ref[1] for j in order], (
                f"queue {q} delayed {got_delayed}, model {[j.ref[1] for j in order]}")
        for i, score in delayed:
            assert delayed_due(score) == model.jobs[(q, text(i))].due, f"due time of {text(i)}"
        seen = wait + prio + got_delayed
        for state, ids in zip(("active", "completed", "failed", "waiting-children"), others,
                              strict=True):
            ids = [text(i) for i in ids]
            expected = sorted(j.ref[1] for j in model.in_state(q, state))
            assert sorted(ids) == expected, f"queue {q} {state} {sorted(ids)}, model {expected}"
            seen += ids
        assert len(seen) == len(set(seen)), f"queue {q}: a job in two states: {sorted(seen)}"
        mine = sorted(j.ref[1] for j in model.jobs.values() if j.ref[0] == q)
        assert sorted(seen) == mine, f"queue {q} jobs {sorted(seen)}, model {mine}"
        counts = await queue.get_job_counts()
        assert counts == model.counts(q), f"queue {q} counts {counts}, model {model.counts(q)}"
        await check_jobs(m, q)
        await check_keys(m, q)


async def check_jobs(m: QueueMachine, q: int) -> None:
    """Attempts, stall counters and pending children of every job of queue ``q``."""
    jobs = [j for j in m.model.jobs.values() if j.ref[0] == q]
    k = m.queues[q].keys
    async with m.client.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.hmget(k.job(job.ref[1]), "atm", "stc")
            pipe.smembers(k.dependencies(job.ref[1]))
        replies = await pipe.execute()
    for n, job in enumerate(jobs):
        atm, stc = replies[2 * n]
        made, stalls = int(atm or 0), int(stc or 0)
        assert (made, stalls) == (job.made, job.stalls), (
            f"job {job.ref}: attempts made, stalls {(made, stalls)}, model "
            f"{(job.made, job.stalls)}")
        pending = sorted(text(c) for c in replies[2 * n + 1])
        expected = sorted(m.job_key(c) for c in job.pending)
        assert pending == expected, f"job {job.ref} pending children {pending}, model {expected}"


async def check_keys(m: QueueMachine, q: int) -> None:
    """Every key of the queue is a known part or belongs to a live job; the
    deduplication keys are held by the jobs the model says."""
    k = m.queues[q].keys
    dedup: dict[str, str] = {}
    async for raw in m.client.scan_iter(match=k.base + "*", count=1000):
        part = text(raw)[len(k.base):]
        # call:<token>: a call's recorded reply (includes/calls.lua), gone with its ttl
        if part in FIXED_PARTS or part.startswith(("metrics:", "call:")):
            continue
        if part.startswith("de:"):
            dedup[part[3:]] = text(await m.client.get(raw))
            continue
        assert part.startswith("job:"), f"queue {q}: unknown key {part}"
        job_id, _, suffix = part[4:].partition(":")
        assert (q, job_id) in m.model.jobs, f"queue {q}: key {part} of no live job"
        assert (":" + suffix if suffix else "") in JOB_SUFFIXES, f"queue {q}: key {part}"
    assert dedup == m.model.queues[q].dedup, (
        f"queue {q} deduplication keys {dedup}, model {m.model.queues[q].dedup}")
    locks = {text(i): text(t) for i, t in (await m.client.hgetall(k.locks)).items()}
    tokens = {j.ref[1]: j.token for j in m.model.in_state(q, "active")}
    assert locks == tokens, f"queue {q} locks {locks}, model {tokens}"
    cancels = {text(i) for i in await m.client.hkeys(k.cancels)}
    for job_id in cancels:
        job = m.model.jobs.get((q, job_id))
        assert job is not None and job.cancel, (
            f"queue {q}: job {job_id} is marked cancelled, but it "
            + ("is gone" if job is None else f"is {job.state} and was not cancelled since"))
    marked = {j.ref[1] for j in m.model.jobs.values() if j.ref[0] == q and j.cancel == "marked"}
    assert marked <= cancels, f"queue {q}: cancels {cancels} lack {marked - cancels}"
    live = {j.ref[1] for j in m.model.jobs.values() if j.ref[0] == q}
    missing = [i for i in live if not await m.client.exists(k.job(i))]
    assert not missing, f"queue {q}: jobs without a hash {missing}"
