"""Fixtures of the script tests: a Queue (for its ``scripts`` wrapper) and a reader
of the queue's raw Redis keys."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from script_support import QueueState

from conveyor import Queue


@pytest.fixture
def state(redis: aioredis.Redis, queue: Queue) -> QueueState:
    return QueueState(redis, queue)
