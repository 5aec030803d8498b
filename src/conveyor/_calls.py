"""Tokens that make a script call safe to send twice (see scripts/includes/calls.lua).

redis-py sends a command again when the connection drops before the reply
arrives; Redis may have run it already. A call that would do something new
when run twice (add a job with a generated id, take jobs for a worker) carries
a token: the script records its reply under the token, and a second run with
it returns that reply. Later calls name the tokens whose replies came back,
so their records go: 16 at a time (one DEL in one call instead of one in
each), so a client holds at most 16 records besides its calls in flight.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from typing import Any

__all__ = ["CallTokens"]

#: Answered tokens a client gathers before a call deletes their records.
FORGET_BATCH = 16


class CallTokens:
    """The tokens of one client's calls (unique per process and object)."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:16] + ":"
        self._count = itertools.count()
        self._answered: list[str] = []

    def new(self) -> str:
        return self._prefix + str(next(self._count))

    def answered(self, token: str) -> None:
        """The reply of ``token``'s call arrived: its record may go."""
        if token:
            self._answered.append(token)

    def tail(self, token: str) -> list[Any]:
        """The last ARGV of a call with ``token`` ("" none): the answered tokens,
        their number, then the token."""
        if len(self._answered) < FORGET_BATCH:
            return [0, token]
        # Swapped, not copied and cleared: threads of conveyor.sync share this.
        answered, self._answered = self._answered, []
        return [*answered, len(answered), token]

    def for_ids(self, ids: Iterable[str]) -> str:
        """A new token if any of ``ids`` is "" (to be generated), else "": an add
        of given ids already adds nothing the second time."""
        return self.new() if any(not job_id for job_id in ids) else ""
