"""Job options, validated at the call before Redis is touched.

Every duration is milliseconds (``int``) or a :class:`datetime.timedelta`.
A refused value raises :class:`~conveyor.errors.ValidationError` naming the field.

Numbers are bounded, so none overflows on its way through Redis (Lua numbers
are doubles) or back into a date: a duration (delay, backoff, timeout,
deduplication ttl, retention age, any worker or admin ms) is at most
:data:`MAX_DURATION_MS`, about 10 years, which keeps a due time (now + delay)
below 2^41 ms until 2029 and below 2^43 ms until 2238 (a delayed job's
score packs a counter beside it); a count (attempts, jobs to keep) at most
:data:`MAX_COUNT`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeAlias

import orjson

from .errors import ValidationError
from .keys import MAX_JOB_ID, validate_job_id, validate_queue_name

__all__ = [
    "DEFAULT_KEEP_COMPLETED",
    "DEFAULT_KEEP_FAILED",
    "MAX_COUNT",
    "MAX_DURATION_MS",
    "MAX_EPOCH_MS",
    "MAX_PRIORITY",
    "NO_OPTIONS",
    "Backoff",
    "Deduplication",
    "Duration",
    "JobOptions",
    "Retention",
    "backoff_delay",
    "parse_limiter",
    "positive_ms",
    "to_ms",
    "validate_job_id",
    "validate_queue_name",
]

Duration: TypeAlias = int | timedelta
RetentionSpec: TypeAlias = bool | int | Mapping[str, Any] | None
BackoffSpec: TypeAlias = int | timedelta | Mapping[str, Any] | None

MAX_PRIORITY = 2_097_152
#: The longest duration of any option: 10 years of 365.25 days, in ms.
MAX_DURATION_MS = 315_576_000_000
#: The largest count of any option (attempts, jobs to keep): 2**31 - 1.
MAX_COUNT = 2_147_483_647
#: The latest epoch ms a date option takes: the last ms of year 9999.
MAX_EPOCH_MS = 253_402_300_799_999
#: The longest job name. A name says which handler runs the job (a task's
#: function name or dotted path), so it gets the bound of the other names a
#: caller picks (job ids, deduplication ids, groups); it also keeps each row of
#: a list of jobs small.
MAX_JOB_NAME = 255
#: Completed jobs kept per queue when ``remove_on_complete`` is not given.
DEFAULT_KEEP_COMPLETED = 1_000
#: Failed jobs (the dead-letter set) kept per queue when ``remove_on_fail`` is not given.
DEFAULT_KEEP_FAILED = 10_000
OPTION_NAMES = frozenset(
    {
        "job_id",
        "delay",
        "priority",
        "attempts",
        "backoff",
        "lifo",
        "timeout",
        "remove_on_complete",
        "remove_on_fail",
        "deduplication",
        "dead_letter_queue",
        "fail_parent_on_failure",
        "ignore_dependency_on_failure",
        "group",
    }
)


def to_ms(field: str, value: object, *, allow_none: bool = False) -> int | None:
    """Milliseconds from an ``int`` or ``timedelta``; refuses negatives, more
    than :data:`MAX_DURATION_MS` and other types."""
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        ms = int(value.total_seconds() * 1000)
    elif isinstance(value, int) and not isinstance(value, bool):
        ms = value
    elif isinstance(value, float) and value.is_integer():
        ms = int(value)
    else:
        raise ValidationError(field, f"expected milliseconds (int) or timedelta, got {value!r}")
    if ms < 0:
        raise ValidationError(field, f"must not be negative, got {ms}", value)
    if ms > MAX_DURATION_MS:
        raise ValidationError(
            field, f"must be at most {MAX_DURATION_MS} ms (about 10 years), got {ms}", value
        )
    return ms


def validate_job_name(name: object, field: str = "name") -> str:
    """A job name: a str of at most :data:`MAX_JOB_NAME` characters."""
    if not isinstance(name, str):
        raise ValidationError(field, f"job name must be a str, got {name!r}", name)
    if len(name) > MAX_JOB_NAME:
        raise ValidationError(
            field, f"job name is {len(name)} characters, more than the limit of {MAX_JOB_NAME}",
            name,
        )
    return name


def check_int(field: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an ``int`` (not a bool) in ``low``..``high`` (``None``:
    unbounded), else a ValidationError naming ``field``."""
    if not isinstance(value, int) or isinstance(value, bool) or (
        low is not None and value < low) or (high is not None and value > high):
        bound = (f" in {low}..{high}" if low is not None and high is not None
                 else f" >= {low}" if low is not None
                 else f" <= {high}" if high is not None else "")
        raise ValidationError(field, f"must be an int{bound}, got {value!r}", value)
    return value


def check_count(field: str, value: object, minimum: int) -> int:
    """An ``int`` in ``minimum``..:data:`MAX_COUNT`, else a ValidationError naming ``field``."""
    if isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= MAX_COUNT:
        return value  # the common case without a second call: job options take this per add
    return check_int(field, value, minimum, MAX_COUNT)


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before retrying a failed attempt."""

    type: Literal["fixed", "exponential", "custom"]
    delay: int = 0
    jitter: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "delay": self.delay, "jitter": self.jitter}

    @classmethod
    def parse(cls, spec: BackoffSpec) -> Backoff | None:
        if spec is None:
            return None
        if isinstance(spec, (int, timedelta)) and not isinstance(spec, bool):
            return cls("fixed", to_ms("backoff", spec) or 0)
        if not isinstance(spec, Mapping):
            raise ValidationError("backoff", f"expected ms, timedelta or a dict, got {spec!r}")
        unknown = set(spec) - {"type", "delay", "jitter"}
        if unknown:
            raise ValidationError("backoff", f"unknown keys {sorted(unknown)}")
        kind = spec.get("type", "fixed")
        if kind not in ("fixed", "exponential", "custom"):
            raise ValidationError(
                "backoff.type",
                f"unknown backoff type {kind!r}; expected 'fixed', 'exponential' or 'custom'",
            )
        delay = to_ms("backoff.delay", spec.get("delay", 0)) or 0
        jitter = spec.get("jitter", 0)
        if (
            not isinstance(jitter, (int, float))
            or isinstance(jitter, bool)
            or not 0 <= jitter <= 1
        ):
            raise ValidationError("backoff.jitter", f"must be a number in 0..1, got {jitter!r}")
        return cls(kind, delay, float(jitter))


def backoff_delay(backoff: Backoff, attempts_made: int) -> int:
    """Delay in ms before the next attempt after ``attempts_made`` runs
    (fixed/exponential), at most :data:`MAX_DURATION_MS`."""
    if backoff.type == "exponential":
        # 2**39 ms is 17 years: past that the power only grows (and costs).
        delay = min(backoff.delay * 2 ** min(max(attempts_made - 1, 0), 40), MAX_DURATION_MS)
    else:
        delay = backoff.delay
    if backoff.jitter:
        delay = int(delay * (1 - backoff.jitter) + random.random() * delay * backoff.jitter)  # noqa: S311 (jitter)
    return int(delay)


@dataclass(frozen=True, slots=True)
class Retention:
    """How many finished jobs to keep: newest ``count`` (``None``: any), younger than ``age_ms``."""

    count: int | None
    age_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        # Seconds, as given (sub-second ages must survive the round trip).
        return {"count": self.count, "age": None if self.age_ms is None else self.age_ms / 1000}

    @classmethod
    def parse(cls, field: str, spec: RetentionSpec, default_count: int) -> Retention:
        if spec is None or spec is False:
            return cls(default_count)
        if spec is True:
            return cls(0)
        if isinstance(spec, int):
            return cls(check_count(field, spec, 0))
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"age", "count"}
            if unknown:
                raise ValidationError(field, f"unknown keys {sorted(unknown)}; use 'age', 'count'")
            count = spec.get("count")
            age = spec.get("age")
            if count is not None:
                check_count(f"{field}.count", count, 0)
            if age is not None and (
                not isinstance(age, (int, float)) or isinstance(age, bool)
                or not 0 <= age <= MAX_DURATION_MS / 1000  # also refuses NaN
            ):
                raise ValidationError(
                    f"{field}.age", f"must be seconds in 0..{MAX_DURATION_MS // 1000} "
                    f"(about 10 years), got {age!r}", age
                )
            return cls(count, None if age is None else round(age * 1000))
        raise ValidationError(field, f"expected bool, int or {{'age', 'count'}}, got {spec!r}")

    def as_args(self) -> tuple[int, int]:
        """(count, age_ms) for the scripts, where -1 means no limit."""
        return (
            -1 if self.count is None else self.count,
            -1 if self.age_ms is None else self.age_ms,
        )


@dataclass(frozen=True, slots=True)
class Deduplication:
    """While a job added with ``deduplication={"id": key, ...}`` is active, an add
    with the same key adds nothing and returns that job.

    - no ``ttl`` (simple): until the job completes or fails for good;
    - ``ttl`` (throttle): for ``ttl`` ms after the job was added;
    - ``extend``: each duplicate restarts the ``ttl``;
    - ``replace`` (debounce): a duplicate replaces the data of the job while it
      is still delayed or waiting, and restarts its ``delay``; with or without
      a ``ttl``, as BullMQ's.
    """

    id: str
    ttl: int | None = None
    extend: bool = False
    replace: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "ttl": self.ttl, "extend": self.extend, "replace": self.replace}

    def as_arg(self) -> str:
        """The add_jobs argument: ``ttl:extend:replace:id``."""
        return f"{self.ttl or 0}:{int(self.extend)}:{int(self.replace)}:{self.id}"

    @classmethod
    def parse(cls, spec: Any) -> Deduplication | None:
        if spec is None:
            return None
        if not isinstance(spec, Mapping):
            raise ValidationError(
                "deduplication", f"expected a dict with 'id' (and 'ttl', 'extend', 'replace'), "
                f"got {spec!r}"
            )
        unknown = set(spec) - {"id", "ttl", "extend", "replace"}
        if unknown:
            raise ValidationError(
                "deduplication", f"unknown keys {sorted(unknown)}; use id, ttl, extend, replace"
            )
        key = spec.get("id")
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str) or not key or len(key) > MAX_JOB_ID:
            raise ValidationError(
                "deduplication.id", f"must be a non-empty string of at most {MAX_JOB_ID} characters"
            )
        ttl = to_ms("deduplication.ttl", spec.get("ttl"), allow_none=True)
        if ttl == 0:
            raise ValidationError("deduplication.ttl", "must be positive (or None: until finished)")
        flags = {}
        for flag in ("extend", "replace"):
            value = spec.get(flag, False)
            if not isinstance(value, bool):
                raise ValidationError(f"deduplication.{flag}", f"must be a bool, got {value!r}")
            flags[flag] = value
        if flags["extend"] and ttl is None:
            raise ValidationError(
                "deduplication.ttl", "extend needs a ttl (the window it restarts)"
            )
        return cls(key, ttl, flags["extend"], flags["replace"])


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Validated options of one job."""

    job_id: str | None = None
    delay: int = 0
    priority: int = 0
    attempts: int = 1
    backoff: Backoff | None = None
    lifo: bool = False
    timeout: int | None = None
    remove_on_complete: Retention = Retention(DEFAULT_KEEP_COMPLETED)
    remove_on_fail: Retention = Retention(DEFAULT_KEEP_FAILED)
    deduplication: Deduplication | None = None
    dead_letter_queue: str | None = None
    #: A child of a flow that fails for good fails its parent too.
    fail_parent_on_failure: bool = False
    #: A child of a flow that fails for good counts as done for its parent.
    ignore_dependency_on_failure: bool = False
    group: str | None = None

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> JobOptions:
        """Validate user options (the keyword arguments of ``Queue.add``)."""
        unknown = set(options) - OPTION_NAMES
        if unknown:
            raise ValidationError(sorted(unknown)[0], "unknown job option")
        job_id = options.get("job_id")
        if job_id == "":  # as None: generate one (a blank form field, an empty env var)
            job_id = None
        if job_id is not None:
            job_id = validate_job_id(job_id)
        priority = check_int("priority", options.get("priority", 0), 0, MAX_PRIORITY)
        attempts = check_count("attempts", options.get("attempts", 1), 1)
        lifo = options.get("lifo", False)
        if not isinstance(lifo, bool):
            raise ValidationError("lifo", f"must be a bool, got {lifo!r}")
        timeout = to_ms("timeout", options.get("timeout"), allow_none=True)
        if timeout == 0:
            raise ValidationError("timeout", "must be positive (or None for no timeout)")
        fail_parent, ignore_failure = _flow_child_options(options)
        return cls(
            job_id=job_id,
            delay=to_ms("delay", options.get("delay", 0)) or 0,
            priority=priority,
            attempts=attempts,
            backoff=Backoff.parse(options.get("backoff")),
            lifo=lifo,
            timeout=timeout,
            remove_on_complete=Retention.parse(
                "remove_on_complete", options.get("remove_on_complete"), DEFAULT_KEEP_COMPLETED
            ),
            remove_on_fail=Retention.parse(
                "remove_on_fail", options.get("remove_on_fail"), DEFAULT_KEEP_FAILED
            ),
            deduplication=Deduplication.parse(options.get("deduplication")),
            dead_letter_queue=_dead_letter_queue(options.get("dead_letter_queue")),
            fail_parent_on_failure=fail_parent,
            ignore_dependency_on_failure=ignore_failure,
            group=_group(options.get("group"), priority),
        )

    def to_json(self) -> dict[str, Any]:
        """The options as stored with the job: only those that differ from the
        defaults (a job with default options stores ``{}``), and not ``job_id``,
        which is the job's key."""
        out: dict[str, Any] = {}
        if self.delay:
            out["delay"] = self.delay
        if self.priority:
            out["priority"] = self.priority
        if self.attempts != 1:
            out["attempts"] = self.attempts
        if self.backoff is not None:
            out["backoff"] = self.backoff.to_json()
        if self.lifo:
            out["lifo"] = True
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.remove_on_complete != Retention(DEFAULT_KEEP_COMPLETED):
            out["remove_on_complete"] = self.remove_on_complete.to_json()
        if self.remove_on_fail != Retention(DEFAULT_KEEP_FAILED):
            out["remove_on_fail"] = self.remove_on_fail.to_json()
        if self.deduplication is not None:
            out["deduplication"] = self.deduplication.to_json()
        if self.dead_letter_queue is not None:
            out["dead_letter_queue"] = self.dead_letter_queue
        if self.fail_parent_on_failure:
            out["fail_parent_on_failure"] = True
        if self.ignore_dependency_on_failure:
            out["ignore_dependency_on_failure"] = True
        if self.group is not None:
            out["group"] = self.group
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> JobOptions:
        """Rebuild options stored by :meth:`to_json` (trusted; not re-validated)."""
        backoff = raw.get("backoff")
        roc = raw.get("remove_on_complete") or {}
        rof = raw.get("remove_on_fail") or {}
        return cls(
            job_id=raw.get("job_id"),
            delay=raw.get("delay", 0),
            priority=raw.get("priority", 0),
            attempts=raw.get("attempts", 1),
            backoff=None if not backoff else Backoff(**backoff),
            lifo=raw.get("lifo", False),
            timeout=raw.get("timeout"),
            remove_on_complete=_retention_from_json(roc, DEFAULT_KEEP_COMPLETED),
            remove_on_fail=_retention_from_json(rof, DEFAULT_KEEP_FAILED),
            deduplication=Deduplication(**dedup) if (dedup := raw.get("deduplication")) else None,
            dead_letter_queue=raw.get("dead_letter_queue"),
            fail_parent_on_failure=raw.get("fail_parent_on_failure", False),
            ignore_dependency_on_failure=raw.get("ignore_dependency_on_failure", False),
            group=raw.get("group"),
        )

    @classmethod
    def from_stored(cls, raw: bytes | str | None) -> JobOptions:
        """Options from a job hash's ``opts`` field. Most jobs of a queue share the
        same few option sets, and options are immutable, so parsed ones are reused."""
        if raw is None:
            raw = b"{}"
        found = _stored_options.get(raw)
        if found is None:
            decoded = orjson.loads(raw)
            if not isinstance(decoded, Mapping):
                raise TypeError(f"expected a JSON object, got {type(decoded).__name__}")
            found = cls.from_json(decoded)
            _check_stored(found)
            if len(_stored_options) >= 1024:
                _stored_options.clear()
            _stored_options[raw] = found
        return found


_stored_options: dict[bytes | str, JobOptions] = {}


def _check_stored(opts: JobOptions) -> None:
    """Raise TypeError for stored options of the wrong types (a corrupt job hash):
    once per distinct stored JSON, so every later read of it is trusted."""
    none = type(None)

    def of(value: object, *types: type) -> bool:
        return isinstance(value, types) and not isinstance(value, bool)

    backoff, dedup = opts.backoff, opts.deduplication
    ok = (
        of(opts.delay, int) and of(opts.priority, int) and of(opts.attempts, int)
        and isinstance(opts.lifo, bool) and of(opts.timeout, int, none)
        and all(of(r.count, int, none) and of(r.age_ms, int, none)
                for r in (opts.remove_on_complete, opts.remove_on_fail))
        and of(opts.group, str, none) and of(opts.dead_letter_queue, str, none)
        and (backoff is None or (of(backoff.delay, int) and of(backoff.jitter, int, float)))
        and (dedup is None or (of(dedup.id, str) and of(dedup.ttl, int, none)))
    )
    if not ok:
        raise TypeError(f"options of the wrong types: {opts}")


# Option sets already validated, by (name, type, value) of each option: an
# application adds with the same few sets over and over. The type is part of
# the key because 1 == True: {"lifo": 1} must not reuse {"lifo": True}.
_parsed_options: dict[tuple[tuple[str, type, Any], ...], tuple[JobOptions, bytes]] = {}


def _no_options() -> tuple[JobOptions, bytes]:
    opts = JobOptions.parse({})
    return opts, orjson.dumps(opts.to_json())


def parse_options(options: Mapping[str, Any]) -> tuple[JobOptions, bytes]:
    """``JobOptions.parse`` and the options as stored (JSON), remembered for
    option sets of plain values (not for a ``job_id``, which is one job's)."""
    if not options:  # the usual add: no options, no queue defaults
        return NO_OPTIONS
    try:
        key = tuple([(name, value.__class__, value) for name, value in options.items()])
        found = _parsed_options.get(key)
    except TypeError:  # a dict or list value (backoff, retention): not hashable
        key, found = None, None
    if found is None:
        opts = JobOptions.parse(options)
        found = opts, orjson.dumps(opts.to_json())
        if key is not None and opts.job_id is None:
            if len(_parsed_options) >= 1024:
                _parsed_options.clear()
            _parsed_options[key] = found
    return found


def _group(group: object, priority: int) -> str | None:
    if group is None:
        return None
    if isinstance(group, int) and not isinstance(group, bool):
        group = str(group)
    if not isinstance(group, str) or not group or len(group) > MAX_JOB_ID:
        raise ValidationError(
            "group", f"must be a non-empty string of at most {MAX_JOB_ID} characters", group
        )
    if ":" in group:
        raise ValidationError("group", f"may not contain ':', got {group!r}", group)
    if priority:
        raise ValidationError(
            "group", "a grouped job has no priority: groups take turns, FIFO within a group"
        )
    return group


def _flow_child_options(options: Mapping[str, Any]) -> tuple[bool, bool]:
    """fail_parent_on_failure and ignore_dependency_on_failure: bools, not both."""
    out = []
    for name in ("fail_parent_on_failure", "ignore_dependency_on_failure"):
        value = options.get(name, False)
        if not isinstance(value, bool):
            raise ValidationError(name, f"must be a bool, got {value!r}", value)
        out.append(value)
    if all(out):
        raise ValidationError(
            "ignore_dependency_on_failure", "choose one: fail_parent_on_failure is set too"
        )
    return out[0], out[1]


def _dead_letter_queue(name: object) -> str | None:
    if name is None:
        return None
    try:
        return validate_queue_name(name)
    except ValidationError as exc:
        raise ValidationError("dead_letter_queue", str(exc).split(": ", 1)[1], name) from None


def _retention_from_json(raw: Mapping[str, Any], default: int) -> Retention:
    if not raw:
        return Retention(default)
    age = raw.get("age")
    return Retention(raw.get("count"), None if age is None else round(age * 1000))


def dump_data(data: Any, max_bytes: int) -> bytes:
    """JSON-encode job data, naming the field on failure."""
    try:
        encoded = orjson.dumps(data)
    except TypeError as exc:
        raise ValidationError("data", f"does not serialize to JSON: {exc}") from None
    if len(encoded) > max_bytes:
        raise ValidationError(
            "data", f"is {len(encoded)} bytes as JSON, more than the limit of {max_bytes}"
        )
    return encoded


def parse_limiter(spec: Mapping[str, Any] | None) -> tuple[int, int]:
    """A worker's ``limiter={"max": n, "duration": ms}`` as (max, window ms); (0, 0): none."""
    if spec is None:
        return (0, 0)
    if not isinstance(spec, Mapping):
        raise ValidationError("limiter", f"expected {{'max': n, 'duration': ms}}, got {spec!r}")
    unknown = set(spec) - {"max", "duration"}
    if unknown:
        raise ValidationError("limiter", f"unknown keys {sorted(unknown)}; use 'max', 'duration'")
    most = check_count("limiter.max", spec.get("max"), 1)
    return most, positive_ms("limiter.duration", spec.get("duration", 1000))


def positive_ms(field: str, value: int | timedelta) -> int:
    """``value`` in ms, refused unless positive."""
    ms = to_ms(field, value)
    if not ms:
        raise ValidationError(field, "must be positive")
    return ms


#: The usual add's options (none given, no queue defaults), parsed once: the add
#: script's arguments are built faster for them (``conveyor._prepare.new_job``).
NO_OPTIONS: tuple[JobOptions, bytes] = _no_options()
