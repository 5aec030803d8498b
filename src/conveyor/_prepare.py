"""Turning what a caller passes to an add into what the add script takes.

One place for it, called by :meth:`conveyor.Queue.add` / ``add_bulk``, by
:class:`conveyor.FlowProducer` (each node of a flow) and by
:class:`conveyor.sync.Queue` (which calls the script on its blocking client):
the job name checked, the queue's default options merged under the call's,
the options parsed and the data encoded within the queue's size cap. A
package-internal module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._scripts.fetch import new_job_args
from .errors import ValidationError
from .keys import QueueKeys, tagged
from .options import NO_OPTIONS, JobOptions, dump_data, parse_options, validate_job_name

if TYPE_CHECKING:
    from ._queue_base import QueueCore
    from ._scripts import NewJob

__all__ = ["BULK_CHUNK", "Prepared", "chunks", "new_job", "prepare_bulk", "prepare_job"]

#: A job ready for the add script: name, data (JSON), options, options (JSON).
Prepared = tuple[str, bytes, JobOptions, bytes]
#: Most jobs one add script call takes (see :func:`chunks`).
BULK_CHUNK = 1000

_NO_OPTIONS = NO_OPTIONS[0]


def prepare_job(queue: QueueCore, name: object, data: Any, options: Mapping[str, Any]) -> Prepared:
    """One job of ``queue``, checked and encoded; raises :class:`ValidationError`
    naming the field at fault."""
    name = validate_job_name(name)
    if queue.default_job_options:
        options = {**queue.default_job_options, **options}
    opts, stored = parse_options(options)
    if opts.dead_letter_queue is not None:
        _refuse_cross_slot_dead_letter(queue, opts.dead_letter_queue)
    return name, dump_data(data, queue.max_data_bytes), opts, stored


def _refuse_cross_slot_dead_letter(queue: QueueCore, target: str) -> None:
    """On a cluster the script that fails a job adds its copy to the dead-letter
    queue: both queues must share a hash slot."""
    if not queue.connector.same_slot(queue.keys.base, QueueKeys(queue.prefix, target).base):
        raise ValidationError("dead_letter_queue", (
            f"queue {target!r} is in another Redis Cluster hash slot than {queue.name!r}; "
            f"give both one hash tag, e.g. {tagged(queue.name, target)!r} and "
            f"{tagged(target, queue.name)!r}"
        ), target)


def prepare_bulk(
    queue: QueueCore, jobs: Iterable[Mapping[str, Any]]
) -> tuple[list[Prepared], list[Any]]:
    """Every item of an add_bulk, checked first (all or nothing), and its data."""
    prepared_all = []
    datas = []
    for i, spec in enumerate(jobs):
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ValidationError(f"jobs[{i}]", "must be a dict with at least 'name'")
        options = {k: v for k, v in spec.items() if k not in ("name", "data")}
        try:
            prepared_all.append(prepare_job(queue, spec["name"], spec.get("data"), options))
        except ValidationError as exc:
            raise ValidationError(f"jobs[{i}].{exc.field}", str(exc).split(": ", 1)[1],
                                  exc.value) from None
        datas.append(spec.get("data"))
    return prepared_all, datas


def new_job(name: str, data: bytes, opts: JobOptions, opts_json: bytes) -> NewJob:
    """A prepared job as the add script's arguments take it."""
    if opts is _NO_OPTIONS:  # the usual add: nothing for the script to act on
        return ("", name, data, opts_json, "")
    dedup = "" if opts.deduplication is None else opts.deduplication.as_arg()
    return new_job_args(opts.job_id or "", name, data, opts_json, opts.delay, opts.priority,
                        opts.lifo, opts.attempts, dedup, opts.group or "")


def chunks(jobs: list[NewJob]) -> list[list[NewJob]]:
    """add_bulk's jobs in script calls of at most BULK_CHUNK: Redis serves nobody
    else while a script runs; MULTI keeps the whole batch atomic."""
    return [jobs[i:i + BULK_CHUNK] for i in range(0, len(jobs), BULK_CHUNK)]
