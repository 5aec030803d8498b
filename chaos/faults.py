"""The chaos run's faults, on a seeded schedule, each written to the fault log.

Kinds: ``kill`` (SIGKILL a worker; the watcher starts another), ``term``
(SIGTERM: it finishes its jobs and exits 0; SIGKILL if it lingers), ``stop``
(SIGSTOP one worker past its lock duration, then SIGCONT: a zombie that
wakes up), ``redis`` (kill -9 the private redis-server and start it on the
same port from its AOF), ``cut``, ``delay`` and ``swallow`` (the proxy in
front of some workers closes their connections, holds replies back, loses
replies), ``failover`` (on a cluster or with sentinels, started by the
driver: see :mod:`chaos.topology`; one at a time, at most every
``failover_every`` seconds). Which fault and when come from ``random.Random(seed)`` (each kind
once first, then drawn by weight); what they hit (pids, connections) depends
on the run's timing.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any

from conveyor.embedded import RedisServer

from .checker import Fault
from .proxy import FaultyProxy
from .workers import Slot, WorkerSet

__all__ = ["FaultInjector"]

#: Relative weights of the kinds; a kind that cannot run (no proxy, Redis not
#: ours) is left out of the draw.
WEIGHTS = {"kill": 4, "term": 3, "stop": 2, "redis": 1, "cut": 2, "delay": 2, "swallow": 2,
           "failover": 2}
#: A Redis restart at most this often (seconds): each one pauses every worker.
REDIS_EVERY_S = 15.0
#: A SIGTERM'd worker that has not exited after this long is SIGKILLed.
TERM_PATIENCE_S = 30.0
#: A failover starts at most this often by default (seconds, from the end of the last).
FAILOVER_EVERY_S = 10.0


class FaultInjector:
    """Draws faults every ``mean_interval`` seconds (on average) until stopped."""

    def __init__(
        self, seed: int, workers: WorkerSet, redis: RedisServer | None,
        proxy: FaultyProxy | None, lock_s: float, mean_interval: float,
        record: Callable[[Fault], None], failover: Callable[[], str] | None = None,
        failover_every: float = FAILOVER_EVERY_S,
    ) -> None:
        """``failover``: fails the Redis over, blocking until it is over (None:
        this Redis has no failover); its detail line."""
        self.rng = random.Random(seed)
        self.workers = workers
        self.redis = redis
        self.proxy = proxy
        self.lock_s = lock_s
        self.mean_interval = mean_interval
        self.record = record
        self.failover = failover
        self.failover_every = failover_every
        self.kinds = [k for k in WEIGHTS
                      if not (k == "redis" and redis is None)
                      and not (k in ("cut", "delay", "swallow") and proxy is None)
                      and not (k == "failover" and failover is None)]
        self._stopping = asyncio.Event()
        self._side: set[asyncio.Task[None]] = set()
        self._last_redis = 0.0
        self._failing_over = False
        self._last_failover = 0.0
        self.errors: list[str] = []  # faults that could not be made (a failover stuck)

    async def run(self) -> None:
        """Every kind once (in a seeded order), then kinds drawn by weight."""
        first = list(self.kinds)
        self.rng.shuffle(first)
        while not self._stopping.is_set():
            wait = self.rng.uniform(0.5, 1.5) * self.mean_interval
            try:
                await asyncio.wait_for(self._stopping.wait(), wait)
                break
            except TimeoutError:
                pass
            kind = first.pop(0) if first else self.rng.choices(
                self.kinds, [WEIGHTS[k] for k in self.kinds])[0]
            await self.inject(kind)

    async def stop(self) -> None:
        """No new fault; wait for those under way (a paused worker is woken)."""
        self._stopping.set()
        await asyncio.gather(*self._side, return_exceptions=True)

    def _pick(self) -> Slot | None:
        live = self.workers.live()
        return self.rng.choice(live) if live else None

    async def inject(self, kind: str) -> None:
        now = time.time()
        if kind in ("kill", "term", "stop"):
            slot = self._pick()
            if slot is None:
                return
            if kind == "kill":
                pid = self.workers.signal(slot, signal.SIGKILL, "kill")
                self.record(Fault("kill", now, now, [pid]))
            elif kind == "term":
                self._spawn(self._term(slot))
            elif not any(s.paused for s in self.workers.slots):  # one zombie at a time
                self._spawn(self._pause(slot))
        elif kind == "redis":
            if self.redis is not None and now - self._last_redis >= REDIS_EVERY_S:
                self._last_redis = now
                await self._restart_redis()
        elif kind == "failover":
            if not self._failing_over and now - self._last_failover >= self.failover_every:
                self._failing_over = True
                self._spawn(self._fail_over())
        elif self.proxy is not None:
            pids = self.workers.proxied_pids()
            if kind == "cut":
                n = self.proxy.cut()
                self.record(Fault("cut", now, now, pids, f"{n} connections"))
            elif kind == "delay":
                seconds, for_s = self.rng.uniform(0.05, 0.5), self.rng.uniform(1, 4)
                self.proxy.delay(seconds, for_s=for_s)
                self.record(Fault("delay", now, now + for_s + seconds, pids,
                                  f"{seconds * 1000:.0f} ms per reply for {for_s:.1f} s"))
            else:
                n = self.rng.randint(1, 5)
                self.proxy.swallow(n)
                # The replies lost are the next ones, within a second or so.
                self.record(Fault("swallow", now, now + 2.0, pids, f"{n} replies"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _term(self, slot: Slot) -> None:
        proc = slot.proc
        assert proc is not None
        at = time.time()
        pid = self.workers.signal(slot, signal.SIGTERM, "term")
        if not await self.workers.wait_exit(proc, TERM_PATIENCE_S):
            self.workers.signal(slot, signal.SIGKILL, "term")
            await self.workers.wait_exit(proc, 10)
            self.record(Fault("term", at, time.time(), [pid], "SIGKILL after SIGTERM"))
            return
        self.record(Fault("term", at, time.time(), [pid], f"exit code {proc.returncode}"))

    async def _pause(self, slot: Slot) -> None:
        """SIGSTOP, past the lock duration and a stalled check, then SIGCONT."""
        slot.paused = True
        at = time.time()
        pid = self.workers.signal(slot, signal.SIGSTOP, "")
        try:
            await asyncio.sleep(self.lock_s + 2.0 + self.rng.uniform(0, 1))
        finally:
            # The end is read before the SIGCONT: a job Redis handed out before
            # it was fetched before the worker woke.
            until = time.time()
            self.workers.signal(slot, signal.SIGCONT, "")
            slot.paused = False
            self.record(Fault("stop", at, until, [pid]))

    async def _fail_over(self) -> None:
        """The failover, in a thread; recorded from its start to its end, for every
        worker (a failover can lose any state change not yet on the replica)."""
        assert self.failover is not None
        at = time.time()
        try:
            detail = await asyncio.to_thread(self.failover)
        except Exception as exc:  # the run fails: a failover that never ends is no test
            detail = f"did not complete: {exc!r}"
            self.errors.append(f"failover started at {at:.3f} {detail}")
        finally:
            self.record(Fault("failover", at, time.time(), None, detail))
            self._failing_over = False
            self._last_failover = time.time()

    async def _restart_redis(self) -> None:
        assert self.redis is not None
        at = time.time()
        await asyncio.to_thread(self.redis.kill)
        await asyncio.to_thread(self.redis.start)  # same port, same dir: its AOF
        self.record(Fault("redis", at, time.time(), None, "kill -9, start from the AOF"))
