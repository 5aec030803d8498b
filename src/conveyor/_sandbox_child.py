"""The child side of sandboxed processors: a process that runs one job at a time.

The worker (conveyor.sandbox) starts this process (``python -c`` calling
:func:`boot`) and talks to it over a socket pair in frames: a 4-byte
length, then a pickle.

worker -> child   ("job", target, info, kwargs)   run ``target`` for one job
                  ("reply", ok, value)            answer to a job call
child -> worker   ("call", method, args)          job.log / update_progress / ...
                  ("done", ok, value, stack, rss) the attempt's result or error

The child has no Redis connection: job calls go through the worker, which
owns the job's lock (see conveyor.sandbox for why). It ignores SIGINT and
SIGTERM: a Ctrl-C or a service stop reaches the whole process group, and the
worker, not the signal, decides whether a running job finishes (graceful
close) or is killed (timeout, cancel, close timeout). It exits when the
worker closes its end of the socket, and at once if the worker dies (its
job is stalled and will run again elsewhere).
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import inspect
import os
import pickle
import resource
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from typing import Any

from ._util import is_async_callable
from .errors import UnrecoverableError

__all__ = ["AsyncSandboxedJob", "SandboxedJob", "boot", "main", "resolve"]

_HEADER = struct.Struct("!I")
#: The job calls a sandboxed processor may make (run by the worker on the real Job).
JOB_CALLS = frozenset(
    {"update_progress", "log", "get_logs", "get_state", "update_data", "move_to_delayed"}
)


def frame(message: Any) -> bytes:
    body = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    length: int = _HEADER.unpack(header)[0]
    return length


class _Channel:
    """The child's blocking end of the socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # Threads of a processor may log at once: one call at a time on the socket.
        self.lock = threading.Lock()

    def send(self, message: Any) -> None:
        self.sock.sendall(frame(message))

    def receive(self) -> Any:
        """The next message, or None when the worker closed its end."""
        header = self._read(_HEADER.size)
        if header is None:
            return None
        body = self._read(frame_length(header))
        # The parent, which started this process, is the only writer of this pipe.
        return None if body is None else pickle.loads(body)  # noqa: S301

    def _read(self, n: int) -> bytes | None:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if not k:
                return None
            got += k
        return bytes(buf)

    def call(self, method: str, *args: Any) -> Any:
        """Run ``method`` of the job in the worker and return its answer."""
        with self.lock:
            self.send(("call", method, args))
            reply = self.receive()
        if reply is None:
            raise ConnectionError("the worker closed the sandbox's connection")
        _, ok, value = reply
        if not ok:
            raise value
        return value


class _JobView:
    """The job's fields, as the worker read them when the attempt started."""

    __slots__ = (
        "_channel", "attempts_made", "attempts_started", "data", "dead_letter_of", "id",
        "name", "opts", "parent_key", "processed_on", "progress", "queue_name",
        "stalled_count", "timestamp",
    )

    def __init__(self, channel: _Channel, info: dict[str, Any]) -> None:
        self._channel = channel
        self.id: str = info["id"]
        self.name: str = info["name"]
        self.data: Any = info["data"]
        self.opts: Any = info["opts"]  # conveyor.options.JobOptions
        self.attempts_made: int = info["attempts_made"]
        self.attempts_started: int = info["attempts_started"]
        self.stalled_count: int = info["stalled_count"]
        self.progress: Any = info["progress"]
        self.timestamp: int = info["timestamp"]
        self.processed_on: int | None = info["processed_on"]
        self.queue_name: str = info["queue_name"]
        self.parent_key: str | None = info["parent_key"]
        self.dead_letter_of: dict[str, Any] | None = info["dead_letter_of"]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.queue_name}:{self.id} {self.name!r}>"

    @property
    def cancel_reason(self) -> str | None:
        """Always None: a cancel kills the sandboxed process instead of asking."""
        return None

    @property
    def is_cancelled(self) -> bool:
        return False


class SandboxedJob(_JobView):
    """What a plain ``def`` processor gets in a sandbox: the job's fields and the
    job calls of :class:`conveyor.sync.SyncJob` that make sense inside an
    attempt (they run in the worker, which holds the job's lock)."""

    __slots__ = ()

    def update_progress(self, progress: int | float | dict[str, Any]) -> None:
        self._channel.call("update_progress", progress)
        self.progress = progress

    def log(self, line: str) -> int:
        n: int = self._channel.call("log", line)
        return n

    def get_logs(self, start: int = 0, end: int = -1) -> list[str]:
        lines: list[str] = self._channel.call("get_logs", start, end)
        return lines

    def get_state(self) -> str | None:
        state: str | None = self._channel.call("get_state")
        return state

    def update_data(self, data: Any) -> None:
        self._channel.call("update_data", data)
        self.data = data

    def move_to_delayed(self, delay: int) -> int:
        due: int = self._channel.call("move_to_delayed", delay)
        return due


class AsyncSandboxedJob(_JobView):
    """What an ``async def`` processor gets in a sandbox: as :class:`SandboxedJob`,
    with awaitable calls (each is a short local round trip to the worker)."""

    __slots__ = ()

    async def update_progress(self, progress: int | float | dict[str, Any]) -> None:
        self._channel.call("update_progress", progress)
        self.progress = progress

    async def log(self, line: str) -> int:
        n: int = self._channel.call("log", line)
        return n

    async def get_logs(self, start: int = 0, end: int = -1) -> list[str]:
        lines: list[str] = self._channel.call("get_logs", start, end)
        return lines

    async def get_state(self) -> str | None:
        state: str | None = self._channel.call("get_state")
        return state

    async def update_data(self, data: Any) -> None:
        self._channel.call("update_data", data)
        self.data = data

    async def move_to_delayed(self, delay: int) -> int:
        due: int = self._channel.call("move_to_delayed", delay)
        return due


def resolve(target: str) -> Any:
    """The object ``"module:qualified.name"`` names (a task's function for a Task)."""
    module_name, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    fn = getattr(obj, "fn", None)  # a conveyor Task: run its function
    if fn is not None and type(obj).__name__ == "Task":
        return fn
    return obj


def _peak_rss_kib() -> int:
    """This process's peak resident memory (KiB). On Linux, VmHWM of this
    address space: ru_maxrss survives exec, so a child would start with the
    peak of the (big) worker that spawned it."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes there, KiB on Linux


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else an Exception that keeps its type's
    name and message (the stack travels as text either way)."""
    try:
        copy = pickle.loads(pickle.dumps(exc, pickle.HIGHEST_PROTOCOL))  # noqa: S301 (our bytes)
        if isinstance(copy, BaseException):
            return exc
    except Exception:  # noqa: S110 (any failure to round-trip means: send a plain copy)
        pass
    return Exception(f"{type(exc).__name__}: {exc}")


class _Child:
    def __init__(self, channel: _Channel) -> None:
        self.channel = channel
        self.targets: dict[str, Any] = {}
        self.runner: asyncio.Runner | None = None  # one loop for the child's life

    def run(self, target: str, info: dict[str, Any], kwargs: dict[str, Any] | None) -> Any:
        fn = self.targets.get(target)
        if fn is None:
            fn = self.targets[target] = resolve(target)
        is_async = is_async_callable(fn)
        job: _JobView = (AsyncSandboxedJob if is_async else SandboxedJob)(self.channel, info)
        if kwargs is not None:
            return self._run_task(fn, job, kwargs, is_async)
        return self._result(fn(job))

    def _run_task(self, fn: Any, job: _JobView, kwargs: dict[str, Any], is_async: bool) -> Any:
        """A task's function with its arguments; current_job() / current_sync_job()
        give it the job, as in a worker without sandbox."""
        from . import tasks

        var: Any = tasks.current_job_var if is_async else tasks.current_sync_job_var
        token = var.set(job)
        try:
            return self._result(fn(**kwargs))
        finally:
            var.reset(token)

    def _result(self, result: Any) -> Any:
        """``result``, awaited on the child's loop if it is awaitable."""
        if not inspect.isawaitable(result):
            return result
        if self.runner is None:
            self.runner = asyncio.Runner()
        # The current context, not the Runner's own: current_job() is set in it.
        return self.runner.run(_awaited(result), context=contextvars.copy_context())


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def boot(fd: int) -> None:
    """Entry point of a child: the worker's end of the socket is ``fd``."""
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(70)

    threading.Thread(target=watch_parent, name="conveyor-parent", daemon=True).start()
    main(socket.socket(fileno=fd))


def main(sock: socket.socket) -> None:
    """The child's loop: take a job, run it, answer; exit at end of input."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    channel = _Channel(sock)
    child = _Child(channel)
    while True:
        message = channel.receive()
        if message is None:
            return
        _, target, info, kwargs = message
        try:
            reply: tuple[Any, ...] = ("done", True, child.run(target, info, kwargs), "")
        except BaseException as exc:  # SystemExit too: it fails the attempt
            stack = "".join(traceback.format_exception(exc))
            reply = ("done", False, _portable(exc), stack)
        with channel.lock:  # a thread the processor left running may still log
            try:
                channel.send((*reply, _peak_rss_kib()))
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                # A programming error (issue 11 item 14): retrying would repeat its work.
                error = UnrecoverableError(f"return value does not serialize to JSON: {exc}")
                channel.send(("done", False, error, "", _peak_rss_kib()))
