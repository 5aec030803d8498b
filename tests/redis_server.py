"""The test suite's private redis-server: the package's own embedded server."""

import redis as redis_sync

from conveyor.embedded import RedisServer, find_redis_server, free_port

__all__ = ["RedisServer", "find_redis_server", "flushed", "free_port"]


def flushed(server: RedisServer) -> str:
    """The server's URL after FLUSHALL, for a test that starts from an empty Redis."""
    with redis_sync.Redis.from_url(server.url) as client:
        client.flushall()
    return server.url
