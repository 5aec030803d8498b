"""The model of tests/test_model.py: a plain-Python picture of two queues that the
state machine keeps beside the real ones, and the rules of what each call must
do to it (the correct semantics: issue 11's, BullMQ's where the issue names
them). No Redis here: tests/test_model.py drives both and compares.

Time: a delayed job is either *far* (due a day or more from now: it never comes
due within a run) or *ripe* (made due now by ``change_delay(0)``: every later
script call sees it due). So no step needs a clock, and none sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: (queue index, job id): a job anywhere in the model.
Ref = tuple[int, str]

READY = ("waiting", "prioritized")


@dataclass
class MJob:
    """One job as the model sees it."""

    ref: Ref
    state: str
    seq: int  # creation order: FIFO among delayed jobs due in the same ms
    priority: int = 0
    lifo: bool = False
    attempts: int = 1
    made: int = 0
    stalls: int = 0
    due: int = 0
    ripe: bool = False
    parent: Ref | None = None
    on_failure: str = ""  # "fail" (fail_parent_on_failure), "ignore", or ""
    remove_on_complete: bool = False
    remove_on_fail: bool = False
    dedup: str = ""
    dedup_ttl: bool = False  # a ttl key is held for its ttl, finished or not
    token: str = ""
    cancel: str = ""  # "marked": cancelled while running; "either": and handed back since
    pending: set[Ref] = field(default_factory=set)


@dataclass
class MQueue:
    """One queue: its ready order, its pause flag and its deduplication keys."""

    wait: list[str] = field(default_factory=list)
    prioritized: list[str] = field(default_factory=list)
    paused: bool = False
    dedup: dict[str, str] = field(default_factory=dict)


class Model:
    """Jobs of two queues and what each call does to them."""

    def __init__(self) -> None:
        self.queues = [MQueue(), MQueue()]
        self.jobs: dict[Ref, MJob] = {}
        self.seq = 0

    # -- reading ------------------------------------------------------------------

    def in_state(self, q: int, state: str) -> list[MJob]:
        return [j for j in self.jobs.values() if j.ref[0] == q and j.state == state]

    def delayed_order(self, q: int) -> list[MJob]:
        return sorted(self.in_state(q, "delayed"), key=lambda j: (j.due, j.seq))

    def ripe(self, q: int) -> bool:
        return any(j.ripe for j in self.in_state(q, "delayed"))

    def counts(self, q: int) -> dict[str, int]:
        out = dict.fromkeys(
            ("waiting", "prioritized", "delayed", "active", "completed", "failed",
             "waiting-children"), 0)
        for j in self.jobs.values():
            if j.ref[0] == q:
                out[j.state] += 1
        return out

    # -- adding -------------------------------------------------------------------

    def new_job(self, ref: Ref, state: str, **fields: object) -> MJob:
        self.seq += 1
        job = MJob(ref, state, self.seq, **fields)  # type: ignore[arg-type]
        self.jobs[ref] = job
        return job

    def added(self, job: MJob, delay: int, timestamp: int) -> None:
        """A job just added (by add, add_bulk or a flow leaf) lands where it must."""
        if delay:
            job.state, job.due = "delayed", timestamp + delay
        else:
            self.push_ready(job, front=job.lifo)

    # -- moving ---------------------------------------------------------------------

    def push_ready(self, job: MJob, front: bool = False, handed_back: bool = False) -> None:
        """To the wait list (its head with ``front`` or ``handed_back``) or its place
        among the prioritized: behind its priority (``front``, LIFO, does not apply
        there), or at the head of it when ``handed_back`` (issue 11 item 7)."""
        front = front or handed_back
        q = self.queues[job.ref[0]]
        job.ripe = False
        if job.cancel:  # whether a cancel still applies to a job back in line is open
            job.cancel = "either"
        if job.priority == 0:
            job.state = "waiting"
            if front:
                q.wait.insert(0, job.ref[1])
            else:
                q.wait.append(job.ref[1])
            return
        job.state = "prioritized"
        prios = [self.jobs[(job.ref[0], i)].priority for i in q.prioritized]
        at = next((n for n, p in enumerate(prios)
                   if (p >= job.priority if handed_back else p > job.priority)), len(prios))
        q.prioritized.insert(at, job.ref[1])

    def leave_ready(self, job: MJob) -> None:
        q = self.queues[job.ref[0]]
        if job.state == "waiting":
            q.wait.remove(job.ref[1])
        elif job.state == "prioritized":
            q.prioritized.remove(job.ref[1])

    def promote_due(self, q: int) -> None:
        for job in [j for j in self.delayed_order(q) if j.ripe]:
            self.push_ready(job, front=False)

    def fetch(self, q: int, n: int) -> list[str]:
        """What a worker's fetch takes (after promoting due delayed jobs)."""
        self.promote_due(q)
        mq = self.queues[q]
        if mq.paused:
            return []
        taken: list[str] = []
        while len(taken) < n and (mq.wait or mq.prioritized):
            taken.append((mq.wait or mq.prioritized).pop(0))
        for job_id in taken:
            self.jobs[(q, job_id)].state = "active"
        return taken

    # -- finishing --------------------------------------------------------------------

    def delete(self, job: MJob) -> None:
        """A job removed: its deduplication key is let go, a ttl key too (issue 11 item 4)."""
        del self.jobs[job.ref]
        q = self.queues[job.ref[0]]
        if job.dedup and q.dedup.get(job.dedup) == job.ref[1]:
            del q.dedup[job.dedup]

    def release_dedup(self, job: MJob) -> None:
        """A job that finished lets go of its key (not of a ttl key)."""
        q = self.queues[job.ref[0]]
        if job.dedup and not job.dedup_ttl and q.dedup.get(job.dedup) == job.ref[1]:
            del q.dedup[job.dedup]

    def completed(self, job: MJob) -> None:
        job.made += 1
        job.state, job.token, job.cancel = "completed", "", ""
        self.release_dedup(job)
        if job.parent and job.parent in self.jobs:
            self.dependency_done(job.parent, job.ref)
        if job.remove_on_complete:
            del self.jobs[job.ref]  # a ttl key stays: it throttles, finished or not

    def failed_for_good(self, job: MJob) -> None:
        job.state, job.token, job.cancel = "failed", "", ""
        self.release_dedup(job)
        parent = self.jobs.get(job.parent) if job.parent else None
        if parent is not None:
            if job.on_failure == "fail":
                self.fail_parent(parent)
            if job.on_failure == "ignore" or job.remove_on_fail:
                # a child deleted as it fails is gone: as if removed (issue 11 item 3),
                # from a parent it failed too (README: deleted counts as done)
                self.dependency_done(parent.ref, job.ref)
        if job.remove_on_fail:
            del self.jobs[job.ref]

    def fail_parent(self, parent: MJob) -> None:
        if parent.state != "waiting-children":
            return
        parent.state = "failed"
        grand = self.jobs.get(parent.parent) if parent.parent else None
        if grand is not None:
            if parent.on_failure == "fail":
                self.fail_parent(grand)
            elif parent.on_failure == "ignore":
                self.dependency_done(grand.ref, parent.ref)

    def dependency_done(self, parent_ref: Ref, child: Ref) -> None:
        parent = self.jobs[parent_ref]
        if child in parent.pending:
            parent.pending.discard(child)
            if not parent.pending and parent.state == "waiting-children":
                self.push_ready(parent, front=parent.lifo)

    def remove(self, job: MJob, children: bool = True) -> None:
        """Queue.remove (and drain, clean): a child lets its parent go; a parent's
        pending children go with it (issue 11 item 22), not with drain and clean
        (``children=False``: the README names remove() only)."""
        self.leave_ready(job)
        job.state = "removed"  # its children going must not release it
        for child in sorted(job.pending) if children else []:
            if child in self.jobs:
                self.remove(self.jobs[child])
        if job.ref not in self.jobs:
            return
        if job.parent and job.parent in self.jobs:
            self.dependency_done(job.parent, job.ref)
        self.delete(job)
