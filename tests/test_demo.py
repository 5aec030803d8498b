"""The README's first command: the demo runs, jobs flow, and it stops cleanly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


def test_demo_runs_jobs_and_stops_cleanly() -> None:
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--seconds", "4"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    completed = [int(n) for n in re.findall(r"completed=(\d+)  ", proc.stdout)]
    assert completed and completed[-1] > 0, proc.stdout
    assert "stopped cleanly" in proc.stdout
    assert "Traceback" not in proc.stderr
