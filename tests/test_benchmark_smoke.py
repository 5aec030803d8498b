"""The benchmark runs end to end on conveyor with tiny numbers (the full run is by hand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_smoke_run_reports_every_scenario() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for label in ("bulk enqueue", "drain, 1 process", "latency p50", "Redis commands per job",
                  "100 concurrent"):
        row = next(line for line in proc.stdout.splitlines() if label in line)
        assert "n/a" not in row and "error" not in row, row


def test_the_cluster_benchmark_drains_on_one_and_three_masters() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster", "--jobs", "200", "--no-callgrind"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for label in ("1 master, plain", "1 master, 8 partitions", "3 masters, 8 partitions"):
        row = next(line for line in proc.stdout.splitlines() if line.startswith(f"| {label} |"))
        assert len(row.split("|")) == 7, row
