"""PostgreSQL access for every process of the example (web front, workers,
sandboxed children): one asyncpg pool per event loop, the schema applied at start."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg

__all__ = ["apply_schema", "close_pool", "database_url", "pool"]

SCHEMA = Path(__file__).with_name("schema.sql")

_pools: dict[asyncio.AbstractEventLoop, asyncpg.Pool] = {}


def database_url() -> str:
    """``$DATABASE_URL``: the same code runs under ``__main__``, a worker and the test."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("DATABASE_URL is not set")
    return url


async def pool() -> asyncpg.Pool:
    """This event loop's pool (made on first use)."""
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is None:
        found = _pools[loop] = await asyncpg.create_pool(database_url(), min_size=1, max_size=10)
    return found


async def close_pool() -> None:
    """Close this event loop's pool, if it has one."""
    found = _pools.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()


async def apply_schema(url: str | None = None) -> None:
    """Create the tables that do not exist yet (``schema.sql`` is idempotent)."""
    conn = await asyncpg.connect(url or database_url())
    try:
        await conn.execute(SCHEMA.read_text())
    finally:
        await conn.close()
