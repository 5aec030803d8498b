"""PostgreSQL access for the pricing jobs: one asyncpg pool per process, from
``$DATABASE_URL``, and the schema applied at start."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import asyncpg

__all__ = ["apply_schema", "close_pool", "pool"]

SCHEMA = Path(__file__).with_name("schema.sql")

_pool: Any = None
_lock = asyncio.Lock()


async def pool() -> Any:
    """The process's asyncpg pool on ``$DATABASE_URL`` (made on first use)."""
    global _pool
    async with _lock:
        if _pool is None:
            _pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1,
                                              max_size=8)
    return _pool


async def close_pool() -> None:
    """Close the pool (at worker or app shutdown)."""
    global _pool
    if _pool is not None:
        await _pool.close()
        _pool = None


async def apply_schema(database_url: str) -> None:
    """Create the tables that do not exist yet."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(SCHEMA.read_text())
    finally:
        await conn.close()
