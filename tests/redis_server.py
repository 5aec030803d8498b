"""The test suite's private redis-server: the package's own embedded server."""

from conveyor.embedded import RedisServer, find_redis_server, free_port

__all__ = ["RedisServer", "find_redis_server", "free_port"]
