"""Every Redis key of a queue, built in one place.

All keys of one queue share the hash tag ``{<queue>}`` so every script touches a
single slot and a queue works unchanged on Redis Cluster::

    <prefix>:{<queue>}:<part>

=================  ======  =====================================================
part               type    contents
=================  ======  =====================================================
``id``             string  counter for generated job ids
``wait``           list    ids of jobs ready to run (head is taken first)
``prioritized``    zset    ids of ready jobs with a priority; score packs
                           ``priority * 2**31 + sequence`` (FIFO per priority)
``pc``             string  sequence counter for ``prioritized``
``delayed``        zset    ids of jobs waiting for a time; score = due time (ms)
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
                           off after a RateLimitError), ...
``cancels``        hash    job id -> reason, for running jobs asked to cancel
``cancel``         channel pub/sub: the id of a running job to cancel now
``limiter``        zset    one member per job start within the rate limiter's
                           window; score = start time (ms)
``marker``         zset    wake-up marker that idle workers block on
``events``         stream  the queue's event log, capped (approximate MAXLEN)
``stalled-check``  string  guard so one stalled check runs per interval
``metrics:completed`` hash  minute (epoch ms // 60000) -> jobs completed in it
``metrics:failed``  hash    the same for jobs that failed for good (two weeks kept)
``metrics:times:<minute>`` hash  ``w<b>``/``p<b>`` -> jobs whose wait / processing
                           time fell in log bucket b (:mod:`conveyor.metrics`)
``de:<key>``       string  id of the job holding deduplication key <key>
                           (expires with the key's ttl, if it has one)
``job:<id>``       hash    one job: see :mod:`conveyor.job`
``job:<id>:logs``  list    the job's log lines
=================  ======  =====================================================

Time in every script is Redis ``TIME``: one clock for all producers and
workers, whatever their hosts' clocks say.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ValidationError

__all__ = ["QueueKeys"]


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The key names of one queue."""

    prefix: str
    queue: str

    @property
    def base(self) -> str:
        """Common prefix of every key of this queue, ending in ``:``."""
        return f"{self.prefix}:{{{self.queue}}}:"

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

    def deduplication(self, key: str) -> str:
        return self.key("de:" + key)

    def job(self, job_id: str) -> str:
        return self.key("job:" + job_id)

    def logs(self, job_id: str) -> str:
        return self.key("job:" + job_id + ":logs")

    def state_key(self, state: str) -> str:
        """The key holding the ids of jobs in ``state``."""
        try:
            return self.key(_STATE_PARTS[state])
        except KeyError:
            raise ValidationError(
                "state", f"unknown job state {state!r}; expected one of {', '.join(STATES)}"
            ) from None


_STATE_PARTS = {
    "waiting": "wait",
    "prioritized": "prioritized",
    "delayed": "delayed",
    "active": "active",
    "completed": "completed",
    "failed": "failed",
    "waiting-children": "waiting-children",
}

#: Every state a job can be in, in the order counts are reported.
STATES: tuple[str, ...] = tuple(_STATE_PARTS)
