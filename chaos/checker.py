"""The chaos run's verdict, from what was recorded: the accepted jobs, how each
ended in Redis, the effects and run log in PostgreSQL, and the fault log.

It passes only when
- every accepted job (its ``add`` returned) ended ``completed`` or ``failed``
  with a reason: none missing from Redis, none stuck in another state;
- every completed job's effect is in PostgreSQL;
- every duplicate run (two runs or more of one job for one attempt) is
  explained: at most one of the runs is untouched by a fault, a fault being
  one the driver recorded (time, kind, the pids it hit) that overlaps the run.
  A ``failover`` (cluster, sentinel) hits every worker: the new master may
  lack any state change the old one acknowledged but had not yet sent to its
  replica (a completion, a retry, a fetch and its lock; only adds are
  durable), so a run that ended shortly before or during it may run again;
- no worker that was paused (SIGSTOP) past its locks started, once woken, a
  job Redis handed to it before it woke (its fetch was sent before the pause)
  whose lock had lapsed by then: a zombie must not run stale jobs.

The checker is pure: :func:`check` takes a :class:`Record` and returns the
violations and a summary, so a test can doctor a record and see it fail.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Fault", "Record", "Run", "Verdict", "check", "main"]

#: A fault's reach in time past its end: a run that ended this long before a
#: fault may still have its report (or its lock) caught by it.
REPORT_SLACK_S = 2.0


@dataclass
class Run:
    """One row of the run log: a run of a job, by a worker process."""

    job_id: str
    pid: int
    attempt: int
    fetched_at: float | None  # when Redis handed the job out (its clock, seconds)
    started_at: float
    ended_at: float | None  # None: the run never ended (its process died)
    outcome: str | None


@dataclass
class Fault:
    """A fault the driver injected: from ``at`` to ``until`` (epoch seconds),
    hitting the worker processes ``pids`` (None: every worker, e.g. a Redis restart)."""

    kind: str
    at: float
    until: float
    pids: list[int] | None = None
    detail: str = ""

    def hits(self, run: Run, lock_s: float) -> bool:
        """Whether this fault can have disturbed ``run``: it reached the run's
        process while the run was on, or soon enough after it ended to catch
        its report or its lock."""
        if self.pids is not None and run.pid not in self.pids:
            return False
        end = math.inf if run.ended_at is None else run.ended_at + lock_s + REPORT_SLACK_S
        return self.at <= end and self.until >= run.started_at


@dataclass
class Record:
    """Everything a chaos run recorded, as the checker reads it."""

    accepted: list[str]
    #: job id -> (state, failed reason) for each job Redis knows; state is
    #: "completed", "failed", another state, or absent (the job is gone).
    ends: dict[str, tuple[str, str | None]]
    effects: dict[str, int]  # job id -> runs that applied the effect
    runs: list[Run]
    faults: list[Fault]
    lock_s: float
    elapsed_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ends": {k: list(v) for k, v in self.ends.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(
            accepted=list(data["accepted"]),
            ends={k: (v[0], v[1]) for k, v in data["ends"].items()},
            effects=dict(data["effects"]),
            runs=[Run(**r) for r in data["runs"]],
            faults=[Fault(**f) for f in data["faults"]],
            lock_s=data["lock_s"], elapsed_s=data.get("elapsed_s", 0.0),
            extra=data.get("extra", {}),
        )


@dataclass
class Verdict:
    violations: list[str]
    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "violations": self.violations, "summary": self.summary}


def _reason_kind(job_id: str, reason: str) -> str:
    """A failed reason with its job id taken out, to count reasons alike."""
    return re.sub(rf"\b{re.escape(job_id)}\b", "<id>", reason)


def check(record: Record, *, max_listed: int = 20) -> Verdict:
    """The violations of ``record`` (each a line; the first ``max_listed`` of a
    kind listed, then a count) and its summary."""
    problems: dict[str, list[str]] = defaultdict(list)
    completed = 0
    failed: Counter[str] = Counter()
    for job_id in record.accepted:
        state, reason = record.ends.get(job_id, ("missing", None))
        if state == "completed":
            completed += 1
            if record.effects.get(job_id, 0) < 1:
                problems["completed without its effect in PostgreSQL"].append(job_id)
        elif state == "failed":
            if not reason:
                problems["failed without a reason"].append(job_id)
            failed[_reason_kind(job_id, reason or "")] += 1
        elif state == "missing":
            problems["accepted but missing from Redis"].append(job_id)
        else:
            problems[f"stuck in state {state!r}"].append(job_id)

    duplicates, explained, by_failover = _duplicates(record, problems)
    woken = _zombies(record, problems)

    violations = []
    for kind, items in problems.items():
        listed = ", ".join(items[:max_listed])
        more = f" (+{len(items) - max_listed} more)" if len(items) > max_listed else ""
        violations.append(f"{kind}: {len(items)}: {listed}{more}")
    jobs = len(record.accepted)
    summary = {
        "jobs": jobs,
        "completed": completed,
        "failed": dict(failed.most_common()),
        "runs": len(record.runs),
        "duplicate_runs": duplicates,
        "duplicates_explained": explained,
        "duplicates_explained_by_failover": by_failover,
        "runs_by_paused_workers_after_waking": woken,
        "faults": dict(Counter(f.kind for f in record.faults).most_common()),
        "elapsed_s": round(record.elapsed_s, 1),
        "throughput_jobs_per_s": round(jobs / record.elapsed_s, 1) if record.elapsed_s else None,
        **record.extra,
    }
    return Verdict(violations, summary)


def _duplicates(record: Record, problems: dict[str, list[str]]) -> tuple[int, int, int]:
    """Runs past the first of a (job, attempt): (how many, how many explained,
    how many of those a failover overlapped)."""
    by_attempt: dict[tuple[str, int], list[Run]] = defaultdict(list)
    for run in record.runs:
        by_attempt[run.job_id, run.attempt].append(run)
    duplicates = explained = by_failover = 0
    failovers = [f for f in record.faults if f.kind == "failover"]
    for (job_id, attempt), runs in by_attempt.items():
        if len(runs) < 2:
            continue
        extra = len(runs) - 1
        duplicates += extra
        untouched = [r for r in runs if not any(f.hits(r, record.lock_s) for f in record.faults)]
        if len(untouched) <= 1:
            explained += extra
            if any(f.hits(r, record.lock_s) for f in failovers for r in runs):
                by_failover += extra
        else:
            pids = ", ".join(str(r.pid) for r in untouched)
            problems["duplicate runs no fault explains"].append(
                f"{job_id} (attempt {attempt}, {len(runs)} runs, untouched by pids {pids})")
    return duplicates, explained, by_failover


def _zombies(record: Record, problems: dict[str, list[str]]) -> int:
    """Flag runs a woken worker started, past their lock, of jobs fetched before
    it woke; how many runs woken workers started."""
    woken = 0
    for fault in record.faults:
        if fault.kind != "stop" or not fault.pids:
            continue
        for run in record.runs:
            if run.pid not in fault.pids or run.started_at <= fault.until:
                continue
            woken += 1
            if (run.fetched_at is not None and run.fetched_at < fault.until
                    and run.started_at > run.fetched_at + record.lock_s):
                problems["a woken zombie ran a job fetched before it woke, past its lock"].append(
                    f"{run.job_id} (pid {run.pid}, paused {fault.at:.3f}-{fault.until:.3f}, "
                    f"fetched {run.fetched_at:.3f}, started {run.started_at:.3f})")

    return woken


def main(argv: list[str] | None = None) -> int:
    """``python -m chaos.checker RECORD.json``: check a run's saved record again."""
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m chaos.checker RECORD.json", file=sys.stderr)
        return 2
    with open(args[0]) as f:
        verdict = check(Record.from_json(json.load(f)))
    print(json.dumps(verdict.as_dict(), indent=2))
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
