"""What every ``conveyor`` command shares: the ``--redis``/``--prefix`` options,
one-line errors, running a coroutine against an :class:`~conveyor.inspection.Inspector`,
durations such as ``30s``/``5m``/``1h``/``2d``, and output (rich tables or JSON).

Whatever a command prints that came from Redis (ids, names, reasons, stack
traces, log lines, queue and worker names) goes through :func:`safe` or
:func:`echo_json`: a control or invisible format character a job carries is
shown as an escape (``\\x1b``, ``\\u202e``), never sent to the terminal; and the
console interprets no rich markup or emoji codes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import orjson
from redis.connection import parse_url
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console
from rich.text import Text

from .._cluster import CLUSTER_SCHEMES, Connector
from .._sentinel import SCHEMES as SENTINEL_SCHEMES
from .._sentinel import parse_sentinel_url
from ..connection import DEFAULT_URL
from ..errors import ConveyorError

if TYPE_CHECKING:
    from ..inspection import Inspector

__all__ = [
    "DURATION",
    "CliGroup",
    "Duration",
    "SafeFormatter",
    "Target",
    "check_url",
    "console",
    "echo_json",
    "fail",
    "format_duration",
    "format_ms",
    "needs_web_extra",
    "parse_json",
    "redact",
    "redis_options",
    "run",
    "safe",
    "safe_cell",
    "with_inspector",
]

T = TypeVar("T")

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES, *SENTINEL_SCHEMES)
#: Width of tables written to a pipe or a file.
PIPED_WIDTH = 200


class CliGroup(click.Group):
    """A group whose errors are one line on stderr: ``Error: <what>`` and, for a
    usage mistake, where to read more; never the usage block or a traceback."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # `conveyor jobs` alone: the help is what was asked for
            sys.exit(0)
        except click.ClickException as exc:
            click.echo(f"Error: {safe(_one_line(exc))}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


def _one_line(exc: click.ClickException) -> str:
    message = " ".join(exc.format_message().split())
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        message += f" (see '{exc.ctx.command_path} --help')"
    return message


def fail(message: str) -> NoReturn:
    """Stop the command with ``message`` as its one line of error."""
    raise click.ClickException(message)


#: The top-level modules of the ``web`` extra (and what they bring along).
WEB_MODULES = frozenset(
    {"fastapi", "fastapi_offline", "prometheus_client", "pydantic", "starlette", "uvicorn"}
)


@contextmanager
def needs_web_extra(what: str) -> Iterator[None]:
    """Imports of the web stack for ``what`` (e.g. ``conveyor dashboard``): a
    missing module of the extra is one line saying what to install."""
    try:
        yield
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in WEB_MODULES:
            raise
        fail(f"{what} needs the web extra: pip install 'conveyor[web]'")


# -- the connection ------------------------------------------------------------


class Target:
    """Where a command reads: the Redis URL and the key prefix."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix

    @property
    def shown_url(self) -> str:
        """The URL with any password masked, for messages."""
        return redact(self.url)


#: A ``password=`` query argument (redis-py reads one in any scheme, unix:// too),
#: or a sentinel URL's ``sentinel_password=``.
_QUERY_PASSWORD = re.compile(r"([?&;](?:sentinel_)?password=)[^&;#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages: the one in the
    user info and a ``password=`` query argument. The user info runs to the last
    ``@``, not to the first ``/``, ``?`` or ``#`` as urllib reads it: a password
    typed with those characters unencoded must not show either (nor does
    anything past them when the URL is too broken to tell)."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # not a URL: everything before an '@' may be a secret
        at = url.rfind("@")
        return url if at < 0 else "***" + url[at:]
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        if colon:
            rest = f"{user}:***{rest[at:]}"
    return _QUERY_PASSWORD.sub(r"\1***", f"{scheme}://{rest}")


def _check_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    return check_url(value or os.environ.get("CONVEYOR_REDIS_URL") or DEFAULT_URL)


def check_url(url: str) -> str:
    """``url`` if redis-py can read it, else a :class:`click.BadParameter` whose
    one line names it with its password masked."""
    problem = None
    # Not urlsplit: it raises on a '[' or ']' (an IPv6 host to it) in a raw password.
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        problem = ("redis://host:port/db, rediss://..., unix://... or "
                   "redis+cluster://host:port,host:port or "
                   "redis+sentinel://host:port,host:port/service/db")
    else:
        try:
            if scheme in CLUSTER_SCHEMES:
                Connector(url)  # reads the URL; connects on first use only
            elif scheme in SENTINEL_SCHEMES:
                parse_sentinel_url(url)
            else:
                parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        except ValueError as exc:
            # redis-py's words quote the piece it could not read, which may be
            # part of a password typed unencoded.
            problem = str(exc) if redact(url) == url else (
                "it does not parse; percent-encode '@', ':', '/', '?', '#', '[' and ']' in a "
                "password")
    if problem is not None:
        raise click.BadParameter(f"{redact(url)!r} is not a Redis URL ({problem})")
    return url


def redis_options(command: Callable[..., T]) -> Callable[..., T]:
    """Add ``--redis URL`` and ``--prefix`` to a command; it receives ``target: Target``."""

    @functools.wraps(command)
    def with_target(*args: Any, redis: str, prefix: str, **kwargs: Any) -> T:
        return command(*args, target=Target(redis, prefix), **kwargs)

    with_target = click.option(
        "--prefix", default="conveyor", show_default=True, metavar="PREFIX",
        help="Key prefix the queues were created with.",
    )(with_target)
    return click.option(
        "--redis", metavar="URL", callback=_check_url,
        help="Redis URL [default: $CONVEYOR_REDIS_URL, else redis://localhost:6379/0].",
    )(with_target)


# -- running -------------------------------------------------------------------


def run(target: Target, main: Coroutine[Any, Any, T], *, interrupted: int = 130) -> T:
    """Run ``main`` to completion; what goes wrong becomes one line of error.

    Ctrl-C ends the command quietly with exit code ``interrupted``.
    """
    try:
        return asyncio.run(main)
    except KeyboardInterrupt:
        sys.exit(interrupted)
    except AuthenticationError as exc:
        fail(f"Redis at {target.shown_url} refused the credentials: {exc}")
    except (RedisConnectionError, ConnectionRefusedError) as exc:
        fail(f"cannot connect to Redis at {target.shown_url}: {_reason(exc)}")
    except RedisTimeoutError:
        fail(f"Redis at {target.shown_url} did not answer in time")
    except ResponseError as exc:
        fail(f"Redis at {target.shown_url} refused a command: {exc}")
    except RedisError as exc:
        fail(f"Redis error at {target.shown_url}: {exc}")
    except ConveyorError as exc:
        fail(str(exc))


def _reason(exc: BaseException) -> str:
    """The operating system's word for a failed connection ("connection refused"),
    else the error's own text."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno).lower()
        seen = seen.__cause__ or seen.__context__
    return " ".join(str(exc).split()) or type(exc).__name__


def with_inspector(
    target: Target,
    body: Callable[[Inspector], Coroutine[Any, Any, T]],
    *,
    queues: Sequence[str] | None = None,
    interrupted: int = 130,
) -> T:
    """Open an Inspector on ``target``, run ``body`` with it, close it: one line
    of error for anything the user can fix."""
    from ..inspection import Inspector

    async def main() -> T:
        async with Inspector(target.url, prefix=target.prefix, queues=queues) as inspector:
            return await body(inspector)

    return run(target, main(), interrupted=interrupted)


# -- input ---------------------------------------------------------------------


class Duration(click.ParamType[int]):
    """``30s``, ``5m``, ``1h``, ``2d``, ``250ms`` or a plain number of milliseconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        match = _DURATION.match(str(value))
        if match is None:
            self.fail(
                f"{value!r} is not a duration (e.g. 30s, 5m, 1h, 2d, or milliseconds)",
                param, ctx,
            )
        return round(float(match[1]) * _UNITS_MS[match[2] or "ms"])


DURATION = Duration()


def parse_json(text: str, what: str) -> Any:
    """``text`` as JSON; ``@path`` reads a file, ``-`` reads stdin."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {text[1:]!r}: {exc.strerror}") from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from None


# -- output --------------------------------------------------------------------


#: Characters that are not printable ASCII: the only ones :func:`safe` looks at twice.
_SUSPECT = re.compile(r"[^\x20-\x7e]")
#: Unicode categories a terminal must not receive raw: controls (C0, DEL, C1),
#: format characters (bidi overrides and isolates, zero-width ones, BOM, tags),
#: line and paragraph separators, and lone surrogates.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else (
        f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def _is_unsafe(char: str) -> bool:
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def safe(value: object, *, newlines: bool = False) -> str:
    """``value`` as text fit for a terminal: each control character (ESC, CR, BEL,
    backspace, the C1 CSI ``\\x9b``...), bidi or zero-width format character and
    line separator becomes its visible escape (``\\x1b``, ``\\u202e``).
    ``newlines=True`` keeps newlines, for multi-line text such as a stack trace;
    elsewhere (a table cell, a one-line field) a newline is ``\\n`` too."""
    text = value if isinstance(value, str) else str(value)

    def escaped(match: re.Match[str]) -> str:
        char = match[0]
        if char == "\n" and newlines:
            return char
        return _escape(char) if char == "\n" or _is_unsafe(char) else char

    return _SUSPECT.sub(escaped, text)


def safe_cell(value: object, style: str = "") -> Text:
    """:func:`safe` ``value`` as a rich Text: a table cell that is never markup."""
    return Text(safe(value), style=style)


def console() -> Console:
    """A console on the current stdout (CliRunner swaps it per call). Piped
    output is not cut to 80 columns: a script reading it wants every cell.
    Strings are never read as markup or emoji codes: they may come from Redis."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(file=sys.stdout, highlight=False, soft_wrap=False, markup=False,
                   emoji=False, width=PIPED_WIDTH if piped else None)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON spells a character beyond the BMP as a surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def safe_json(value: Any, *, indent: bool = True) -> str:
    """``value`` as JSON (datetimes as ISO-8601) that a terminal can show: orjson
    escapes C0 controls; DEL, C1 controls and format characters inside strings
    become ``\\uXXXX`` escapes too (the same JSON value; outside strings JSON has
    none of them)."""
    option = orjson.OPT_INDENT_2 if indent else 0
    text = orjson.dumps(value, option=option, default=str).decode()
    return _SUSPECT.sub(
        lambda m: _json_escape(m[0]) if m[0] != "\n" and _is_unsafe(m[0]) else m[0], text)


class SafeFormatter(logging.Formatter):
    """A log formatter for a terminal: the message is one :func:`safe` line (a job
    name or failure reason cannot forge a log line or send an escape sequence);
    a traceback keeps its newlines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return safe(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return safe(super().formatException(ei), newlines=True)

    def formatStack(self, stack_info: str) -> str:
        return safe(super().formatStack(stack_info), newlines=True)


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON (see :func:`safe_json`)."""
    click.echo(safe_json(value))


def format_ms(ms: int | float | None) -> str:
    """An epoch-ms timestamp as ``2026-11-23 22:15:03`` UTC, or ``-``; the
    number itself past what a date holds."""
    if ms is None:
        return "-"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"{ms:.0f} ms"


def format_duration(ms: int | float | None) -> str:
    """``850ms``, ``2.4s``, ``3m12s``, ``1h05m``; a whole number of days, hours,
    minutes or seconds as ``2d``, ``1h``, ``5m``, ``30s``; ``-`` for None."""
    if ms is None:
        return "-"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms >= size:
            if ms % size == 0:
                return f"{ms // size:.0f}{unit}"
            break
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
