"""The chaos run's ``conveyor worker`` processes: started, watched, restarted.

Each slot runs the real CLI (``python -m conveyor worker chaos.tasks:app``);
some slots reach Redis through the :class:`~chaos.proxy.FaultyProxy`. A
process that exits when the driver did not stop it (a toxic ``os._exit`` job)
is recorded as a fault of kind ``exit`` and started again, as one the
driver killed is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .checker import Fault

__all__ = ["Slot", "WorkerSet"]

ROOT = Path(__file__).resolve().parent.parent
#: A process this young (seconds) may still be importing, before the worker's
#: SIGTERM handler is in place: SIGTERM then ends it at once (exit -15). It
#: has fetched nothing yet, and whatever it had is checked like any job.
STARTING_S = 10.0


@dataclass
class Slot:
    index: int
    redis_url: str
    proxied: bool
    proc: subprocess.Popen[bytes] | None = None
    #: pid -> why the driver signalled it ("kill", "term"): its exit is no surprise.
    expected: dict[int, str] = field(default_factory=dict)
    paused: bool = False
    starts: int = 0
    started_at: float = 0.0  # time.monotonic() of the last start

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class WorkerSet:
    """``count`` worker processes; the first ``proxied`` of them through the proxy."""

    def __init__(
        self, count: int, redis_url: str, proxy_url: str | None, proxied: int,
        env: dict[str, str], logs: Path, record_fault: Callable[[Fault], None],
    ) -> None:
        self.slots = [
            Slot(i, proxy_url if proxy_url and i < proxied else redis_url,
                 bool(proxy_url and i < proxied))
            for i in range(count)
        ]
        self.env = {**os.environ, **env}
        self.logs = logs
        self.record_fault = record_fault
        self.pids: list[int] = []  # every pid that ever ran
        self.unexpected_exits = 0
        self.stopped_starting = 0  # SIGTERMed at the end before their handler was in place
        self._watching = True

    def start_all(self) -> None:
        for slot in self.slots:
            self._start(slot)

    def _start(self, slot: Slot) -> None:
        slot.starts += 1
        slot.started_at = time.monotonic()
        log = self.logs / f"worker-{slot.index}-{slot.starts}.log"
        with log.open("wb") as out:
            slot.proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "worker", "chaos.tasks:app",
                 "--redis", slot.redis_url, "--log-level", "warning"],
                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.pids.append(slot.proc.pid)

    def proxied_pids(self) -> list[int]:
        return [s.pid for s in self.slots if s.proxied and s.pid is not None]

    def live(self) -> list[Slot]:
        """Slots whose process runs and is not paused."""
        return [s for s in self.slots if s.alive and not s.paused]

    def signal(self, slot: Slot, sig: signal.Signals, why: str) -> int:
        assert slot.proc is not None
        if why:
            slot.expected[slot.proc.pid] = why
        with contextlib.suppress(ProcessLookupError):
            os.kill(slot.proc.pid, sig)
        return slot.proc.pid

    async def watch(self) -> None:
        """Restart any process that has exited, until :meth:`stop`; an exit the
        driver did not cause is a fault (``exit``)."""
        while self._watching:
            for slot in self.slots:
                proc = slot.proc
                if proc is None or proc.poll() is None:
                    continue
                if proc.pid not in slot.expected:
                    self.unexpected_exits += 1
                    now = time.time()
                    self.record_fault(Fault("exit", now, now, [proc.pid],
                                            f"exit code {proc.returncode}"))
                self._start(slot)
            await asyncio.sleep(0.1)

    async def stop(self, timeout: float = 60.0) -> list[str]:
        """SIGTERM every process (SIGCONT a paused one first), wait, SIGKILL what
        lingers; problems seen (a non-zero exit) as lines."""
        self._watching = False
        problems = []
        young = set()
        for slot in self.slots:
            if slot.alive and slot.proc is not None:
                if time.monotonic() - slot.started_at < STARTING_S:
                    young.add(slot.proc.pid)
                if slot.paused:
                    self.signal(slot, signal.SIGCONT, "")
                self.signal(slot, signal.SIGTERM, "stop")
        deadline = time.monotonic() + timeout
        for slot in self.slots:
            proc = slot.proc
            if proc is None:
                continue
            if not await self.wait_exit(proc, max(0.0, deadline - time.monotonic())):
                problems.append(f"worker {proc.pid} did not stop within {timeout:.0f} s of "
                                "SIGTERM: killed")
                proc.kill()
                proc.wait()
            elif proc.returncode == -signal.SIGTERM and proc.pid in young:
                self.stopped_starting += 1
            elif proc.returncode != 0:
                problems.append(f"worker {proc.pid} exited with {proc.returncode} after SIGTERM")
        return problems

    async def wait_exit(self, proc: subprocess.Popen[bytes], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True
