"""Django: jobs enqueued once the database transaction commits
(``pip install 'conveyor[django]'``).

::

    from django.db import transaction
    from conveyor.django import enqueue_on_commit

    with transaction.atomic():
        order = Order.objects.create(customer=customer)
        enqueue_on_commit(confirm_order.enqueue_sync, order_id=order.id)

A job added inside a transaction may run before the transaction commits (the
worker then does not find the order yet), or for a transaction that rolls back
(the order never existed). :func:`enqueue_on_commit` calls ``add(*args,
**kwargs)`` through Django's ``transaction.on_commit`` instead: when the
outermost ``atomic`` block commits, not at all when it rolls back, and at once
outside a transaction (autocommit).

``add`` is any call that adds a job: ``Task.enqueue_sync`` and
:class:`conveyor.sync.Queue` ``.add`` in synchronous code (views under WSGI,
management commands), ``Task.enqueue`` and :class:`conveyor.Queue` ``.add`` in
async views: their ORM work runs in ``sync_to_async``, and at the commit the
coroutine is run on the view's own event loop (asgiref's ``async_to_sync``),
the loop the async queue's connections belong to. A failure to enqueue is
raised at the end of the ``atomic`` block, after the commit; with
``OnCommit(robust=True)`` Django logs it instead.

:class:`OnCommit` names the database (``OnCommit(using="orders")``);
``enqueue_on_commit`` is ``OnCommit()``, the default database.

Add ``"conveyor.django"`` to ``INSTALLED_APPS`` for the ``conveyor_worker``
management command: ``python manage.py conveyor_worker myapp.tasks:app``
takes the options of ``conveyor worker`` and runs the workers with Django set
up, so tasks use the ORM.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import async_to_sync
from django.db import transaction

__all__ = ["OnCommit", "enqueue_on_commit"]

P = ParamSpec("P")
T = TypeVar("T")


class OnCommit:
    """Calls that add jobs, made when a transaction of database ``using``
    commits (``None``: the default database); ``robust``: a failing call is
    logged by Django, not raised at the end of the ``atomic`` block."""

    def __init__(self, using: str | None = None, *, robust: bool = False) -> None:
        self.using = using
        self.robust = robust

    def __repr__(self) -> str:
        return f"OnCommit(using={self.using!r}, robust={self.robust!r})"

    def __call__(self, add: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Call ``add(*args, **kwargs)`` when the current transaction commits
        (never if it rolls back; now if none is open); awaited if it is a coroutine."""
        transaction.on_commit(
            functools.partial(_add_now, add, *args, **kwargs),
            using=self.using, robust=self.robust,
        )


#: Add a job when the default database's transaction commits: ``enqueue_on_commit(add, ...)``.
enqueue_on_commit = OnCommit()


def _add_now(add: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
    added = add(*args, **kwargs)
    if inspect.isawaitable(added):
        # From a thread of sync_to_async: on the loop that awaits that thread.
        async_to_sync(_awaited)(added)


async def _awaited(added: Awaitable[T]) -> T:
    return await added
