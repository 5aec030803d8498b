"""The side-by-side benchmark: conveyor and its peers, one machine, one run.

Each peer is an adapter under ``benchmarks/adapters/`` (see ``common.py`` there
for the protocol and the scenarios). The harness installs every Python peer into
its own virtualenv (``benchmarks/.venvs/<name>``) and BullMQ for Node with npm,
starts one private redis-server for all of them, and runs the scenarios round
by round, peers in turn (A B A B), flushing Redis before every run. It reports
medians and spread (min..max) in a table, in ``RESULTS.md`` and as a plot.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from conveyor.embedded import RedisServer

HERE = Path(__file__).resolve().parent
ADAPTERS = HERE / "adapters"
VENVS = HERE / ".venvs"


@dataclass(frozen=True)
class Step:
    """One scenario run: what every peer is asked to do once per round."""

    label: str
    scenario: str
    n: int
    processes: int = 1
    concurrency: int = 50
    metric: str = "value"  # the JSON field reported in the table
    higher_is_better: bool = True


def plan(n: int) -> list[Step]:
    """The scenarios of the benchmark issue, scaled by ``n`` (20,000 for the full run)."""
    return [
        Step("enqueue one by one (jobs/s)", "enqueue", max(n // 4, 10)),
        Step("bulk enqueue (jobs/s)", "enqueue_bulk", n),
        Step("drain, 1 process (jobs/s)", "drain", n),
        Step("drain, 1 process: Redis CPU (% of a core)", "drain", n,
             metric="redis_cpu_percent", higher_is_better=False),
        Step("drain, 2 processes (jobs/s)", "drain", n, processes=2),
        Step("drain, 2 processes: Redis CPU (% of a core)", "drain", n, processes=2,
             metric="redis_cpu_percent", higher_is_better=False),
        Step("10 ms I/O jobs, concurrency 100 (jobs/s)", "io", max(n // 10, 500),
             concurrency=100),
        Step("latency p50 (ms)", "latency", max(n // 100, 10), metric="p50",
             higher_is_better=False),
        Step("latency p99 (ms)", "latency", max(n // 100, 10), metric="p99",
             higher_is_better=False),
        Step("10k delayed due at once (jobs/s)", "delayed", max(n // 2, 10)),
        Step("memory per waiting job (bytes)", "memory", max(n // 2, 10),
             metric="per_waiting_job", higher_is_better=False),
        Step("memory left per finished job, default retention (bytes)", "memory", max(n // 2, 10),
             metric="per_finished_job", higher_is_better=False),
        Step("Redis commands per job", "memory", max(n // 2, 10), metric="commands_per_job",
             higher_is_better=False),
        Step("enqueue, 1 async producer (jobs/s)", "producers", n, concurrency=1),
        Step("enqueue, 100 concurrent producers (jobs/s)", "producers", n, concurrency=100),
        Step("idle worker: Redis commands/s", "idle", 1, higher_is_better=False),
        Step("idle worker: CPU %", "idle", 1, metric="cpu_percent", higher_is_better=False),
    ]


@dataclass
class Peer:
    name: str
    command: list[str]  # how to run its adapter, before the scenario arguments
    settings: str
    version: str = ""
    results: dict[tuple[str, int, int, int], list[dict[str, Any]]] = field(default_factory=dict)


def _literals(path: Path) -> dict[str, Any]:
    """NAME, REQUIREMENTS and SETTINGS of an adapter file, read without importing it."""
    found: dict[str, Any] = {}
    for node in ast.parse(path.read_text()).body:
        target = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id in ("NAME", "REQUIREMENTS", "SETTINGS"):
            found[target.id] = ast.literal_eval(value)
    return found


def discover() -> dict[str, Path]:
    peers = {}
    for path in sorted(ADAPTERS.glob("*_adapter.py")):
        name = _literals(path).get("NAME")
        if name:
            peers[name] = path
    node = ADAPTERS / "bullmq_node" / "package.json"
    if node.exists():
        peers[json.loads(node.read_text())["benchmark"]["name"]] = node.parent
    return peers


def prepare(name: str, path: Path, log: Any) -> Peer:
    """Install the peer (once per requirement set) and return how to run it."""
    if path.is_dir():  # BullMQ for Node
        meta = json.loads((path / "package.json").read_text())
        if not (path / "node_modules").exists():
            log(f"installing {name} with npm")
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=path, check=True,
                           stdout=subprocess.DEVNULL)
        version = meta.get("dependencies", {}).get("bullmq", "")
        return Peer(name, ["node", str(path / "adapter.mjs")], meta["benchmark"]["settings"],
                    f"bullmq {version} (node {_node_version()})")
    lits = _literals(path)
    reqs: list[str] = lits.get("REQUIREMENTS", [])
    if not reqs:  # conveyor itself: the project's environment
        from conveyor import __version__

        return Peer(name, [sys.executable, str(path)], lits.get("SETTINGS", ""),
                    f"conveyor {__version__}")
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    digest = hashlib.sha256("\n".join(reqs).encode()).hexdigest()
    if not python.exists() or not stamp.exists() or stamp.read_text() != digest:
        log(f"installing {name}: {' '.join(reqs)}")
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *reqs], check=True,
                       stdout=subprocess.DEVNULL)
        stamp.write_text(digest)
    return Peer(name, [str(python), str(path)], lits.get("SETTINGS", ""), " ".join(reqs))


def _node_version() -> str:
    node = shutil.which("node")
    if not node:
        return "?"
    return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()


def run_one(peer: Peer, step: Step, url: str, timeout: float) -> dict[str, Any]:
    with redis.Redis.from_url(url) as client:
        client.flushall()
    cmd = [*peer.command, step.scenario, "--url", url, "--n", str(step.n),
           "--processes", str(step.processes), "--concurrency", str(step.concurrency)]
    # The caller's PYTHONPATH is kept after the adapters: a checkout run with
    # PYTHONPATH=src measures its own conveyor, not the one installed in the venv.
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, (str(ADAPTERS),
                                                       os.environ.get("PYTHONPATH"))))}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=ADAPTERS)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def median_spread(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} CPU {cpu}, {mem:.0f} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def start_server() -> RedisServer:
    server = RedisServer()
    server.start()
    with redis.Redis.from_url(server.url) as client:
        client.config_set("appendonly", "no")  # measure the queues, not fsync
    return server
