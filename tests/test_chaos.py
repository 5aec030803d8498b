"""The chaos suite (chaos/): a 2-minute ``python -m chaos`` run passes its
checker, and the checker fails that run's record once it is doctored (a
lost job, a stuck one, a missing effect, an unexplained duplicate, a zombie
run), so it cannot pass vacuously. Two shorter runs start a Redis Cluster (3
masters each with a replica) and a sentinel setup, and fail them over while
jobs flow, with durable adds: no accepted job may be lost."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chaos.checker import Fault, Record, Run, check
from chaos.faults import WEIGHTS

ROOT = Path(__file__).resolve().parent.parent
#: About 75 s of adding at 40 jobs/s with a fault every ~2.5 s, then the drain.
CHAOS_ARGS = ["--duration", "75", "--rate", "40", "--workers", "3", "--concurrency", "8",
              "--fault-interval", "2.5", "--seed", "15", "--drain-timeout", "300"]


#: About 20 s of adding at 40 jobs/s, a fault every ~2 s (a failover among
#: the first four), then the drain: 40-60 s in all on an idle machine (see
#: chaos/RESULTS.md).
FAILOVER_ARGS = ["--duration", "20", "--rate", "40", "--workers", "3", "--concurrency", "8",
                 "--fault-interval", "2", "--seed", "3", "--drain-timeout", "120"]


def _chaos(tmp: Path, args: list[str], timeout: float) -> dict[str, Any]:
    paths = {"out": tmp / "report.json", "record": tmp / "record.json", "logs": tmp / "logs"}
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "chaos", *args,
         *(arg for name, path in paths.items() for arg in (f"--{name}", str(path)))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    report = json.loads(paths["out"].read_text()) if paths["out"].exists() else {}
    return {"proc": proc, "report": report, "record": paths["record"]}


@pytest.fixture(scope="module")
def chaos_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _chaos(tmp_path_factory.mktemp("chaos"), CHAOS_ARGS, 840)


@pytest.mark.timeout(900)
def test_a_two_minute_chaos_run_loses_nothing_and_explains_every_duplicate(
    chaos_run: dict[str, Any],
) -> None:
    proc = chaos_run["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "chaos run passed" in proc.stdout
    summary = chaos_run["report"]["summary"]
    assert summary["jobs"] >= 2_500
    assert summary["completed"] >= 0.9 * summary["jobs"]
    # Every kind of fault happened, and toxic jobs died each way.
    assert (set(WEIGHTS) - {"failover"}) | {"exit"} <= set(summary["faults"])  # failover: not here
    reasons = " | ".join(summary["failed"])
    for reason in ("RuntimeError: toxic job", "timed out", "stalled more than"):
        assert reason in reasons, summary["failed"]
    assert summary["duplicate_runs"] > 0  # the faults did cause runs to repeat...
    assert summary["duplicates_explained"] == summary["duplicate_runs"]  # ...each explained


@pytest.mark.timeout(900)
def test_the_checker_fails_a_doctored_record_of_that_run(chaos_run: dict[str, Any]) -> None:
    record = Record.from_json(json.loads(chaos_run["record"].read_text()))
    assert check(record).ok
    completed = [j for j in record.accepted if record.ends[j][0] == "completed"]
    lost, stuck, no_effect, twice = completed[:4]
    far = max(r.started_at for r in record.runs) + 3600  # no fault near it

    def doctored(change: Any) -> list[str]:
        copied = copy.deepcopy(record)
        change(copied)
        return check(copied).violations

    assert doctored(lambda r: r.ends.pop(lost)) == [
        f"accepted but missing from Redis: 1: {lost}"]
    assert doctored(lambda r: r.ends.__setitem__(stuck, ("active", None))) == [
        f"stuck in state 'active': 1: {stuck}"]
    assert doctored(lambda r: r.effects.pop(no_effect)) == [
        f"completed without its effect in PostgreSQL: 1: {no_effect}"]
    first = next(run for run in record.runs if run.job_id == twice)
    extra = Run(twice, 1, first.attempt, far, far, far + 1, "ok")
    [violation] = doctored(lambda r: r.runs.extend([extra, Run(**{**vars(extra), "pid": 2})]))
    assert violation.startswith(f"duplicate runs no fault explains: 1: {twice} (attempt")

    pause = next(f for f in record.faults if f.kind == "stop")
    assert pause.pids is not None
    zombie = Run("c0", pause.pids[0], 9, pause.at - 1, pause.until + 1, pause.until + 2, "ok")
    [violation] = doctored(lambda r: r.runs.append(zombie))
    assert violation.startswith(
        "a woken zombie ran a job fetched before it woke, past its lock: 1: c0")


def test_a_duplicate_is_explained_by_a_fault_on_its_process_only() -> None:
    runs = [Run("j", 10, 1, 100.0, 100.0, None, None), Run("j", 11, 1, 104.0, 104.0, 105.0, "ok")]
    record = Record(["j"], {"j": ("completed", None)}, {"j": 1}, runs, [], lock_s=3.0)
    assert check(record).violations[0].startswith("duplicate runs no fault explains")
    record.faults = [Fault("kill", 101.0, 101.0, [99])]  # another process
    assert not check(record).ok
    record.faults = [Fault("kill", 99.0, 99.0, [10])]  # before the run began
    assert not check(record).ok
    record.faults = [Fault("kill", 101.0, 101.0, [10])]
    verdict = check(record)
    assert verdict.ok, verdict.violations
    assert (verdict.summary["duplicate_runs"], verdict.summary["duplicates_explained"]) == (1, 1)
    record.faults = [Fault("redis", 101.0, 102.0, None)]  # every process
    assert check(record).ok


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("redis", "how"), [
    ("cluster", "kill -9 master"), ("sentinel", "SENTINEL FAILOVER")])
def test_a_failover_under_chaos_loses_no_durably_added_job(
    tmp_path: Path, redis: str, how: str,
) -> None:
    run = _chaos(tmp_path, ["--redis", redis, *FAILOVER_ARGS], 240)
    proc = run["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = run["report"]
    summary = report["summary"]
    assert summary["redis"] == redis and summary["durable_adds"] is True
    # 800 at the rate asked; fewer when a loaded machine holds the replica's acks back
    assert summary["jobs"] >= 400 and summary["completed"] >= 0.9 * summary["jobs"]
    [failover] = [f for f in report["fault_log"] if f["kind"] == "failover"]
    assert failover["detail"].startswith(how), failover
    assert {"kill", "term", "stop"} <= set(summary["faults"])
    assert summary["duplicates_explained"] == summary["duplicate_runs"]


def test_a_failover_explains_a_duplicate_of_any_process_it_overlaps() -> None:
    # The completion of pid 10's run was lost with the old master: it ran again.
    runs = [Run("j", 10, 1, 100.0, 100.0, 101.0, "ok"), Run("j", 11, 1, 109.0, 109.0, 110.0, "ok")]
    record = Record(["j"], {"j": ("completed", None)}, {"j": 2}, runs, [], lock_s=3.0)
    record.faults = [Fault("failover", 120.0, 130.0, None)]  # after both runs
    assert not check(record).ok
    record.faults = [Fault("failover", 101.5, 108.0, None, "SENTINEL FAILOVER")]
    verdict = check(record)
    assert verdict.ok, verdict.violations
    assert verdict.summary["duplicates_explained_by_failover"] == 1
