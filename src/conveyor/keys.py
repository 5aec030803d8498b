"""Every Redis key of a queue, built in one place.

All keys of one queue share the hash tag ``{<queue>}`` so every script touches a
single slot, and on Redis Cluster a queue lives on the master of that slot
(:mod:`conveyor._cluster`)::

    <prefix>:{<queue>}:<part>

A queue name may open with its own hash tag, ``{<tag>}<rest>``; its keys are
then ``<prefix>:{<tag>}<rest>:<part>``, in the slot of ``<tag>``: queues that
share a tag share a slot, as the queues of a flow and a queue and its
dead-letter queue must on a cluster (one script writes them).

=================  ======  =====================================================
part               type    contents
=================  ======  =====================================================
``id``             string  counter for generated job ids
``wait``           list    ids of jobs ready to run (head is taken first)
``prioritized``    zset    ids of ready jobs with a priority; score packs
                           ``priority * 2**31 + place``: ``2**30 + sequence``
                           for a job made ready (FIFO per priority),
                           ``2**30 - 1 - sequence`` for one handed back
                           unfinished (head of its priority, last first)
``pc``             string  sequence counter for ``prioritized``
``delayed``        zset    ids of jobs waiting for a time; score packs ``due *
                           1024 + n`` (due ms; n = jobs already due that ms,
                           so FIFO up to 1024 per ms, then by id). Exact to the
                           ms up to 2**43 - 1 (year 2248); a later due time is
                           kept as that ms. Read it with :func:`delayed_due`
``active``         zset    ids of running jobs; score = lock deadline (ms)
``locks``          hash    job id -> lock token of each running job; the token
                           is ``<worker id>:<attempts started>:<attempts
                           made>:<processed on ms>`` (the attempt's own facts
                           live here until it ends: one write per batch)
``completed``      zset    ids of finished jobs; score = finish time (ms)
``failed``         zset    ids of jobs that exhausted their attempts; the
                           dead-letter set; score = finish time (ms)
``meta``           hash    queue settings: ``paused``, ``concurrency`` (global
                           cap on active jobs), ``limited_until`` (ms: backing
                           off after a RateLimitError), ``parents`` (the
                           queue ever held a flow parent: deleting a job then
                           deletes its children bookkeeping too), ``groups``
                           (a group ever had work: fetches look at groups), ...
``cancels``        hash    job id -> reason, for running jobs asked to cancel
``cancel``         channel pub/sub: the id of a running job to cancel now
``limiter``        zset    one member per job start within the rate limiter's
                           window; score = start time (ms)
``marker``         zset    wake-up marker that idle workers block on: ``0``
                           (score 0: work is ready) and ``d`` (score = the
                           earliest due time of a delayed job, ms)
``events``         stream  the queue's event log, capped (approximate MAXLEN)
``stalled-check``  string  guard so one stalled check runs per interval
``metrics:completed`` hash  minute (epoch ms // 60000) -> jobs completed in it
``metrics:failed``  hash    the same for jobs that failed for good (two weeks kept)
``metrics:times:<minute>`` hash  ``w<b>``/``p<b>`` -> jobs whose wait / processing
                           time fell in log bucket b (:mod:`conveyor.metrics`)
``group:<g>``      list    ready jobs of group <g> (add(group=...)), FIFO
``group:<g>:limiter`` zset one member per start of group <g> in its rate window
``groups``         zset    rotation of groups with ready jobs (round-robin:
                           lowest score next); ``groups:busy`` (set: groups at
                           their concurrency cap), ``groups:limited`` (zset:
                           rate-limited groups, score = free again at, ms),
                           ``groups:active`` (hash: group -> running jobs)
``de:<key>``       string  id of the job holding deduplication key <key>
                           (expires with the key's ttl, if it has one)
``call:<client>``  hash    field <n> -> the recorded reply of call ``<client>:<n>``,
                           one safe to send twice (an add that generates ids, a
                           worker's report and fetch): a resend after a lost
                           reply returns it instead of running again. The
                           client's later calls delete answered fields; the
                           hash expires 5 minutes after the client's first call or last
                           trim (scripts/includes/calls.lua, :mod:`conveyor._calls`)
``job:<id>``       hash    one job: see :mod:`conveyor.job`
``job:<id>:logs``  list    the job's log lines
``waiting-children`` zset  ids of flow parents waiting for their children;
                           score = time added (ms)
``job:<id>:dependencies`` set  job keys of a parent's children not done yet
                           (a child may be in another queue: see
                           :mod:`conveyor.flows`)
``job:<id>:processed`` hash  child job key -> its return value (JSON)
``job:<id>:failed`` hash   child job key -> failed reason, for children whose
                           failure was ignored (``ignore_dependency_on_failure``)
``schedulers``     zset    job scheduler ids; score = when the scheduler must make
                           its next job (ms: the due time of the job it made last;
                           ``+inf`` once it has made its last job)
``scheduler:<id>`` hash    one job scheduler: ``spec`` (JSON), the job template
                           (``name``, ``data``, ``opts``, ``prio``, ``att``,
                           ``lifo``), ``cur``/``nxt`` (slot of the job made last /
                           to make next, ms), ``pend`` (that job's id), ``cnt``
                           (jobs made), ``gen`` (bumped by each upsert); see
                           :mod:`conveyor.schedulers`
``schedulers-marker`` zset wake-up marker: an upsert wakes a worker's scheduler loop
``workers``        zset    ids of the workers of the queue; score = when each
                           registered (ms). Entries whose ``worker:<id>`` expired
                           are dropped by ``get_workers`` and worker starts
``worker:<id>``    string  one worker's heartbeat, JSON: ``host``, ``pid``,
                           ``conc``, ``run`` (ids of its running jobs),
                           ``started`` (ms), ``ttl`` (ms); expires unless the
                           next heartbeat renews it (see :mod:`conveyor.workers`)
=================  ======  =====================================================

Outside the queues' hash tags, ``<prefix>:queues`` (set) names every queue
that was added to or worked on: the registry that ``conveyor.inspection``, the CLI
and the dashboard list queues from. A Queue writes it once (on its first add),
a Worker when it starts.

Time in every script is Redis ``TIME``: one clock for all producers and
workers, whatever their hosts' clocks say.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum

from .errors import ValidationError

__all__ = [
    "STATES",
    "JobState",
    "QueueKeys",
    "delayed_due",
    "glob_escape",
    "registry_key",
    "tagged",
    "validate_job_id",
    "validate_prefix",
    "validate_queue_name",
]


class JobState(StrEnum):
    """The state a job is in. A state is its name (``JobState.WAITING ==
    "waiting"``): the name Redis replies, JSON, the REST API and the CLI use.
    Each state but ``UNKNOWN`` is a key of the queue (:meth:`QueueKeys.state_key`)."""

    WAITING = "waiting"
    PRIORITIZED = "prioritized"
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    WAITING_CHILDREN = "waiting-children"
    #: The job's hash exists but no state's key holds its id (a job being
    #: moved, or one whose keys were edited by hand).
    UNKNOWN = "unknown"


#: A finished job's states (its ids scored by finish time).
FINISHED: tuple[JobState, ...] = (JobState.COMPLETED, JobState.FAILED)

#: The delayed zset's score is ``due * DELAY_SHIFT + n`` (see the table above).
DELAY_SHIFT = 1024


def delayed_due(score: float) -> int:
    """The due time (epoch ms) of a job whose score in the delayed zset is ``score``."""
    return int(score) // DELAY_SHIFT


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The key names of one queue."""

    prefix: str
    queue: str
    #: Common prefix of every key of this queue, ending in ``:``: the name in
    #: braces, or as it is when it carries its own hash tag (``{tag}rest``).
    #: Built once: the worker's every call names a dozen keys.
    base: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        braced = self.queue if self.queue.startswith("{") else f"{{{self.queue}}}"
        object.__setattr__(self, "base", f"{self.prefix}:{braced}:")

    def key(self, part: str) -> str:
        return self.base + part

    @property
    def id(self) -> str:
        return self.key("id")

    @property
    def wait(self) -> str:
        return self.key("wait")

    @property
    def prioritized(self) -> str:
        return self.key("prioritized")

    @property
    def priority_counter(self) -> str:
        return self.key("pc")

    @property
    def delayed(self) -> str:
        return self.key("delayed")

    @property
    def active(self) -> str:
        return self.key("active")

    @property
    def locks(self) -> str:
        return self.key("locks")

    @property
    def completed(self) -> str:
        return self.key("completed")

    @property
    def failed(self) -> str:
        return self.key("failed")

    @property
    def meta(self) -> str:
        return self.key("meta")

    @property
    def cancels(self) -> str:
        return self.key("cancels")

    @property
    def cancel_channel(self) -> str:
        return self.key("cancel")

    @property
    def limiter(self) -> str:
        return self.key("limiter")

    @property
    def marker(self) -> str:
        return self.key("marker")

    @property
    def events(self) -> str:
        return self.key("events")

    @property
    def stalled_check(self) -> str:
        return self.key("stalled-check")

    def metrics(self, kind: str) -> str:
        """Per-minute counts of ``completed`` or ``failed`` jobs."""
        return self.key("metrics:" + kind)

    def metrics_times(self, minute: int) -> str:
        """Wait/processing time histogram of one minute (epoch ms // 60000)."""
        return self.key(f"metrics:times:{minute}")

    @property
    def schedulers(self) -> str:
        return self.key("schedulers")

    @property
    def schedulers_marker(self) -> str:
        return self.key("schedulers-marker")

    def scheduler(self, scheduler_id: str) -> str:
        return self.key("scheduler:" + scheduler_id)

    def group(self, group: str) -> str:
        return self.key("group:" + group)

    def deduplication(self, key: str) -> str:
        return self.key("de:" + key)

    def job(self, job_id: str) -> str:
        return self.key("job:" + job_id)

    def logs(self, job_id: str) -> str:
        return self.key("job:" + job_id + ":logs")

    def dependencies(self, job_id: str) -> str:
        """A flow parent's children not done yet (set of job keys)."""
        return self.key("job:" + job_id + ":dependencies")

    def processed(self, job_id: str) -> str:
        """A flow parent's completed children: job key -> return value JSON."""
        return self.key("job:" + job_id + ":processed")

    def failed_children(self, job_id: str) -> str:
        """A flow parent's children whose failure was ignored: job key -> reason."""
        return self.key("job:" + job_id + ":failed")

    @property
    def workers(self) -> str:
        return self.key("workers")

    def worker(self, worker_id: str) -> str:
        return self.key("worker:" + worker_id)

    def state_key(self, state: str) -> str:
        """The key holding the ids of jobs in ``state``."""
        try:
            return self.key(_STATE_PARTS[state])
        except KeyError:
            raise ValidationError(
                "state", f"unknown job state {state!r}; expected one of {', '.join(STATES)}"
            ) from None


#: The key part holding each state's job ids (see the table above).
_STATE_PARTS: dict[str, str] = {
    JobState.WAITING.value: "wait",
    JobState.PRIORITIZED.value: "prioritized",
    JobState.DELAYED.value: "delayed",
    JobState.ACTIVE.value: "active",
    JobState.COMPLETED.value: "completed",
    JobState.FAILED.value: "failed",
    JobState.WAITING_CHILDREN.value: "waiting-children",
}

#: Every state a job can be counted in, in the order counts are reported (their
#: names as plain strings: they key count dicts that go out as JSON).
STATES: tuple[str, ...] = tuple(_STATE_PARTS)


def tagged(name: str, other: str) -> str:
    """``name`` with the hash tag of ``other`` (else ``{tag}``), for messages
    that suggest one; a name with a tag keeps its own."""
    if name.startswith("{"):
        return name
    tag = other[:other.find("}") + 1] if other.startswith("{") else "{tag}"
    return tag + name


def registry_key(prefix: str) -> str:
    """The set of every queue name under ``prefix`` (see the table above)."""
    return f"{prefix}:queues"


def parse_queue_key(key: str) -> tuple[str, str, str]:
    """A key of a queue -> (prefix, queue, part): ``<prefix>:{<queue>}:<part>``,
    or ``<prefix>:{<tag>}<rest>:<part>`` for a name with its own hash tag.
    Raises ValueError for any other key."""
    prefix, brace, rest = key.partition(":{")  # a prefix holds no braces
    close = rest.find("}")
    if not brace or close < 0:
        raise ValueError(f"not a queue key: {key!r}")
    if rest[close + 1:close + 2] == ":":
        return prefix, rest[:close], rest[close + 2:]
    name, colon, part = rest.partition(":")  # a name holds no ':'
    if not colon:
        raise ValueError(f"not a queue key: {key!r}")
    return prefix, "{" + name, part


def parse_job_key(key: str) -> tuple[str, str, str]:
    """``<prefix>:{<queue>}:job:<id>`` (say, a flow child's key) -> (prefix, queue, id)."""
    prefix, queue, part = parse_queue_key(key)
    if not part.startswith("job:"):
        raise ValueError(f"not a job key: {key!r}")
    return prefix, queue, part[4:]


# -- what may go into a key name ---------------------------------------------------

MAX_QUEUE_NAME = 200
MAX_JOB_ID = 255
#: What a prefix may not hold: a brace would end the hash tag early.
_NOT_IN_PREFIXES = frozenset("{}")
#: Characters SCAN MATCH reads as a pattern.
_GLOB_SPECIAL = frozenset("\\*?[]")


def validate_prefix(prefix: object) -> str:
    """``prefix`` if it can start key names: a non-empty ``str`` without braces,
    else a ValidationError naming ``prefix``."""
    if not isinstance(prefix, str) or not prefix or not _NOT_IN_PREFIXES.isdisjoint(prefix):
        raise ValidationError("prefix", f"must be non-empty without braces, got {prefix!r}")
    return prefix


def glob_escape(value: str) -> str:
    """``value`` with glob specials escaped, to match itself in SCAN MATCH."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in value)


#: Unicode categories a queue name may not use: controls, format characters
#: (zero-width, bidi, BOM, tags: invisible, so ``email`` and ``email\u200b``
#: would look alike), line and paragraph separators, surrogates, private-use
#: and unassigned code points (no glyph anyone can check).
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
#: ':', '{' and '}' would break key names (but a leading hash tag); '/' the REST
#: API's paths.
_NOT_IN_QUEUE_NAMES = frozenset(":{}/")


def validate_queue_name(name: object) -> str:
    """``name`` if it can name a queue, else a ValidationError on ``name`` saying
    which character is refused: a non-empty string of at most
    :data:`MAX_QUEUE_NAME` characters, without ':', '/', '{', '}', whitespace, or
    control, invisible format, private-use or unassigned characters.

    One exception: a name may open with its own hash tag, ``{tag}rest`` (tag and
    rest non-empty), so that queues sharing the tag share a Redis Cluster slot
    (what a flow across queues, or a dead-letter queue, needs there)."""
    if not isinstance(name, str) or not name:
        raise ValidationError("name", f"queue name must be a non-empty string, got {name!r}")
    if len(name) > MAX_QUEUE_NAME:
        raise ValidationError("name", f"queue name longer than {MAX_QUEUE_NAME} characters")
    if name.isascii() and name.isprintable() and " " not in name and (
        _NOT_IN_QUEUE_NAMES.isdisjoint(name)
    ):
        return name
    close = name.find("}")
    if name.startswith("{") and close > 1 and len(name) > close + 1:
        # {tag}rest: tag and rest as any name (so neither holds a brace)
        parts = (name[1:close], name[close + 1:])
        if all(_is_plain_name(part) for part in parts):
            return name
    for char in name:
        if char in _NOT_IN_QUEUE_NAMES or char.isspace() or (
            unicodedata.category(char) in _INVISIBLE
        ):
            raise ValidationError("name", (
                f"queue name {name!r} may not contain {_describe(char)} (refused: ':', '/', "
                "'{', '}' (but a leading hash tag: '{tag}name'), whitespace, control and "
                "invisible characters)"
            ), name)
    return name


def _is_plain_name(name: str) -> bool:
    """Whether ``name`` is a queue name without a hash tag of its own."""
    try:
        return validate_queue_name(name) == name and "{" not in name
    except ValidationError:
        return False


def _describe(char: str) -> str:
    if char.isprintable() and not char.isspace():
        return repr(char)
    what = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({what})" if what else "")


def validate_job_id(job_id: object) -> str:
    """A job id as every call that takes one accepts it (an ``int`` as its
    digits), else a :class:`ValidationError` naming ``job_id``: a non-empty
    ``str`` of at most :data:`MAX_JOB_ID` characters, without ``:`` and not
    ``.`` or ``..``. Any other character, ``/`` included, is allowed: the REST
    API takes the rest of the path as the id (the action, if any, is the last
    segment)."""
    if isinstance(job_id, int) and not isinstance(job_id, bool):
        job_id = str(job_id)
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_JOB_ID:
        raise ValidationError(
            "job_id", f"must be a non-empty string of at most {MAX_JOB_ID} characters, "
            f"got {job_id!r:.80}", job_id
        )
    if ":" in job_id:
        # ids live inside key names: "x:logs" would be job x's log key
        raise ValidationError("job_id", f"may not contain ':', got {job_id!r:.80}", job_id)
    if job_id in (".", ".."):
        # a URL path resolves these segments away: .../jobs/../retry is .../retry
        raise ValidationError("job_id", f"may not be '.' or '..', got {job_id!r}", job_id)
    return job_id
