"""Sandboxed processors: each attempt runs in a child process that can be killed.

``Worker(..., sandbox=True)`` (or ``@app.task(sandbox=True)``) runs the
processor in a pool of child processes, one job at a time per child, instead
of in the worker's event loop or thread pool. A timeout, a cancel or a
``close(timeout)`` then stops the attempt for real (SIGKILL: a thread cannot
be stopped), and a crash (``os._exit``, a segfault, the OOM killer) fails
only that attempt, with :class:`~conveyor.errors.SandboxCrashError`; the
child is replaced. ``max_jobs_per_child`` / ``max_memory_per_child`` retire a
child after that many jobs, or once its peak resident memory passed that many
KiB (Celery's units), and start a fresh one.

The processor must be importable by name in a child: a module-level function
(``async def`` or ``def``), given as the function or as ``"module:function"``.
Children are fresh interpreters (``sys.executable`` with the worker's
``sys.path``; no fork of a process that runs threads and an event loop, and
no re-run of the worker's ``__main__`` as multiprocessing's spawn does), so
a function defined in ``__main__``, inside another function, or a lambda
cannot be imported there and is refused with a
:class:`~conveyor.errors.ValidationError` naming ``processor``.

Job calls made in the child (``log``, ``update_progress``, ``update_data``,
``get_state``, ``get_logs``, ``move_to_delayed``) travel to the worker over
the child's socket and run there on the real :class:`~conveyor.Job`. The
child gets no Redis connection of its own: the worker holds the job's lock,
so a killed or timed-out child cannot write to a job it no longer owns; the
worker's ``progress`` listeners fire as usual; and N children do not mean N
more Redis connections or a copy of the connection's credentials in each.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import pickle
import signal
import socket
import sys
import weakref
from asyncio.subprocess import Process
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeAlias

from . import _sandbox_child
from ._sandbox_child import AsyncSandboxedJob, SandboxedJob, frame, frame_length
from .errors import SandboxCrashError, ValidationError
from .job import Job

__all__ = [
    "AsyncSandboxedJob",
    "SandboxPool",
    "SandboxProcessor",
    "SandboxedJob",
    "make_pool",
    "processor_reference",
    "task_reference",
]

log = logging.getLogger("conveyor.sandbox")

#: What ``Worker(..., sandbox=True)`` runs: a module-level function taking the
#: child's view of the job.
SandboxProcessor: TypeAlias = (
    Callable[[SandboxedJob], Any] | Callable[[AsyncSandboxedJob], Awaitable[Any]]
)

#: A child's first lines: the worker's sys.path, then the loop on the inherited socket.
_BOOT = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[2]); "
    "from conveyor._sandbox_child import boot; boot(int(sys.argv[1]))"
)

_pools: weakref.WeakSet[SandboxPool] = weakref.WeakSet()


class _RemoteTraceback(Exception):
    """The stack of an exception raised in a sandboxed process (as
    concurrent.futures shows a process pool's)."""

    def __init__(self, stack: str) -> None:
        super().__init__(stack)
        self.stack = stack

    def __str__(self) -> str:
        return f"\n'''\n{self.stack}'''"


def processor_reference(processor: Any, field: str = "processor") -> str:
    """``"module:qualified.name"`` for a processor a child process can import;
    raises :class:`ValidationError` naming ``field`` for one it cannot."""
    if isinstance(processor, str):
        module_name, _, name = processor.partition(":")
        if not module_name or not name:
            raise ValidationError(field, f"expected 'module:function', got {processor!r}")
        try:
            target = _sandbox_child.resolve(processor)
        except (ImportError, AttributeError) as exc:
            raise ValidationError(field, f"cannot import {processor!r}: {exc}") from None
        if not callable(target):
            raise ValidationError(field, f"{processor!r} is not callable")
        return processor
    reference = _reference(processor, field)
    qualname = reference.partition(":")[2]
    try:
        # Where it lives here (__main__ for -m: importing that module again would run it twice).
        target = _sandbox_child.resolve(f"{processor.__module__}:{qualname}")
    except (ImportError, AttributeError):
        target = None
    if target is not processor and getattr(processor, "fn", None) is not target:
        raise ValidationError(field, f"{_WHY}; {reference} does not name {processor!r}")
    return reference


_WHY = ("a sandboxed processor runs in a child process that imports it by name: give a "
        "module-level function (or 'module:function')")


def _reference(fn: Any, field: str) -> str:
    """``"module:qualname"`` of ``fn`` as a child would import it (unchecked)."""
    module: Any = getattr(fn, "__module__", None)
    qualname: Any = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        raise ValidationError(field, f"{_WHY}, not {fn!r}")
    if module == "__main__":
        # Run with ``python -m package.module``: the child imports it by that name.
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is None or not spec.name or spec.name == "__main__":
            raise ValidationError(field, f"{_WHY}; {qualname} is defined in a script's "
                                         "__main__, which a child process does not run: "
                                         "move it to a module (or run the script with -m)")
        module = spec.name
    return f"{module}:{qualname}"


def task_reference(fn: Callable[..., Any], *, checked: bool = True) -> str:
    """The name a sandboxed child imports a task's function by; ``checked=False``
    while the task is being registered (its module attribute is not set yet)."""
    return processor_reference(fn, "sandbox") if checked else _reference(fn, "sandbox")


def make_pool(
    sandbox: bool, size: int, max_jobs_per_child: int | None, max_memory_per_child: int | None
) -> SandboxPool | None:
    """The pool a worker needs (None without ``sandbox``); checks the limits."""
    if not isinstance(sandbox, bool):
        raise ValidationError("sandbox", f"must be a bool, got {sandbox!r}", sandbox)
    for field, value in (("max_jobs_per_child", max_jobs_per_child),
                         ("max_memory_per_child", max_memory_per_child)):
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValidationError(field, f"must be an int >= 1 or None, got {value!r}", value)
        if not sandbox:
            raise ValidationError(field, "applies to sandboxed processors: add sandbox=True")
    if not sandbox:
        return None
    return SandboxPool(size, max_jobs_per_child, max_memory_per_child)


class _Child:
    __slots__ = ("jobs", "process", "reader", "writer")

    def __init__(self, process: Process, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self.jobs = 0


class SandboxPool:
    """Up to ``size`` child processes, each running one job at a time."""

    def __init__(
        self, size: int, max_jobs_per_child: int | None = None,
        max_memory_per_child: int | None = None,
    ) -> None:
        self.size = size
        self.max_jobs_per_child = max_jobs_per_child
        self.max_memory_per_child = max_memory_per_child
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._tasks: set[asyncio.Future[Any]] = set()  # reaping and replacing children
        self._closed = False
        _pools.add(self)

    def __repr__(self) -> str:
        return f"<SandboxPool size={self.size} idle={len(self._idle)} busy={len(self._busy)}>"

    def pids(self) -> list[int]:
        """The pids of the live children."""
        return [c.process.pid for c in [*self._idle, *self._busy]]

    async def run(self, job: Job, target: str, kwargs: dict[str, Any] | None = None) -> Any:
        """Run ``target`` (see :func:`processor_reference`) for ``job`` in a child:
        ``target(job)``, or ``target(**kwargs)`` for a task. Returns its return
        value or raises its exception; a cancel kills the child."""
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        child = self._idle.pop() if self._idle else await self._spawn()
        self._busy.add(child)
        try:
            _, ok, value, stack, peak_kib = await self._attempt(child, job, target, kwargs)
        except BaseException:
            # Cancelled (timeout, cancel, close), or the child died: it goes.
            self._busy.discard(child)
            self._kill(child)
            raise
        self._busy.discard(child)
        child.jobs += 1
        if self._worn_out(child, peak_kib):
            self._retire(child)
        else:
            self._release(child)
        if ok:
            return value
        if stack:
            value.__cause__ = _RemoteTraceback(stack)
        raise value

    async def _attempt(
        self, child: _Child, job: Job, target: str, kwargs: dict[str, Any] | None
    ) -> tuple[Any, ...]:
        child.writer.write(frame(("job", target, _job_info(job), kwargs)))
        await child.writer.drain()
        while True:
            try:
                header = await child.reader.readexactly(4)
                # The child is our own process, started from our own code.
                message = pickle.loads(  # noqa: S301
                    await child.reader.readexactly(frame_length(header)))
            except (asyncio.IncompleteReadError, ConnectionError):
                raise SandboxCrashError(await self._death(child, job)) from None
            if message[0] == "done":
                return tuple(message)
            _, method, args = message
            try:
                if method not in _sandbox_child.JOB_CALLS:
                    raise ValidationError("method", f"{method!r} is not a job call")
                reply: tuple[Any, ...] = ("reply", True, await getattr(job, method)(*args))
            except Exception as exc:
                reply = ("reply", False, exc)
            try:
                data = frame(reply)
            except Exception as exc:  # an answer that does not pickle
                data = frame(("reply", False, Exception(f"{type(exc).__name__}: {exc}")))
            child.writer.write(data)
            await child.writer.drain()

    async def _death(self, child: _Child, job: Job) -> str:
        """Why the child stopped answering (it is gone: read its exit code)."""
        process = child.process
        try:
            code: int | None = await asyncio.wait_for(process.wait(), 5.0)
        except TimeoutError:
            code = None
        if code is None:
            how = "closed its connection"
        elif code < 0:
            name = signal.Signals(-code).name
            how = f"was killed by {name}"
            if -code == signal.SIGKILL:
                how += " (out of memory? the kernel's OOM killer sends SIGKILL)"
        else:
            how = f"exited with code {code}"
        log.warning("job %s: sandboxed process %s %s; starting another", job.id, process.pid, how)
        return f"the sandboxed process (pid {process.pid}) running the job {how}"

    def _worn_out(self, child: _Child, peak_kib: int) -> bool:
        limit = self.max_jobs_per_child
        if limit is not None and child.jobs >= limit:
            return True
        memory = self.max_memory_per_child
        if memory is not None and peak_kib > memory:
            log.info("sandboxed process %s: peak memory %d KiB > %d KiB; replacing it",
                     child.process.pid, peak_kib, memory)
            return True
        return False

    async def _spawn(self) -> _Child:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _BOOT, str(theirs.fileno()), json.dumps(sys.path),
                stdin=asyncio.subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours)
        except BaseException:  # cancelled here: the process must not outlive us
            ours.close()
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            self._background(process.wait())
            raise
        return _Child(process, reader, writer)

    def _release(self, child: _Child) -> None:
        """Back to the idle children, unless the pool has enough without it."""
        if self._closed or len(self._idle) + len(self._busy) >= self.size:
            child.writer.close()
            self._background(child.process.wait())
        else:
            self._idle.append(child)

    def _retire(self, child: _Child) -> None:
        """End of input: the child exits after its current (finished) job; a
        fresh one starts now, so the next job does not wait for its imports."""
        child.writer.close()
        self._reap(child)
        self._background(self._replace())

    def _kill(self, child: _Child) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.process.kill()
        child.writer.close()
        self._reap(child)
        self._background(self._replace())

    async def _replace(self) -> None:
        if self._closed:
            return
        try:
            child = await self._spawn()
        except OSError as exc:  # the next job starts one itself (and says why if it can't)
            log.warning("could not start a sandboxed process: %s", exc)
            return
        self._release(child)

    def _reap(self, child: _Child) -> None:
        async def reap() -> None:
            try:
                await asyncio.wait_for(child.process.wait(), 10.0)
            except TimeoutError:  # a retired child stuck in its job's cleanup
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()

        self._background(reap())

    def _background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop every child (idle ones exit; busy ones are killed) and wait for them."""
        self._closed = True
        idle, self._idle = self._idle, []
        for child in idle:
            self._retire(child)
        for child in list(self._busy):
            self._kill(child)
        while self._tasks:  # a replacement started meanwhile is stopped by _release
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _job_info(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "name": job.name, "data": job.data, "opts": job.opts,
        "attempts_made": job.attempts_made, "attempts_started": job.attempts_started,
        "stalled_count": job.stalled_count, "progress": job.progress,
        "timestamp": job.timestamp, "processed_on": job.processed_on,
        "queue_name": job.queue.name, "parent_key": job.parent_key,
        "dead_letter_of": job.dead_letter_of,
    }


@atexit.register
def _kill_children() -> None:
    # A pool never closed: its children ignore SIGTERM, and a busy one would
    # finish a job whose worker is gone (it is stalled and runs again elsewhere).
    for pool in list(_pools):
        for child in [*pool._idle, *pool._busy]:
            with contextlib.suppress(OSError):
                os.kill(child.process.pid, signal.SIGKILL)

