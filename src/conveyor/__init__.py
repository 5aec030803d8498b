"""conveyor: a background job queue for asyncio Python on Redis.

::

    from conveyor import Queue, Worker

    queue = Queue("email", connection="redis://localhost:6379/0")
    await queue.add("send-welcome", {"to": "ada@example.com"}, attempts=3)

    async def process(job):
        return {"sent": True}

    await Worker("email", process, connection="redis://localhost:6379/0").run()
"""

from ._cluster import Connector
from .app import Conveyor, Task
from .errors import (
    ConveyorError,
    DurabilityError,
    JobFailedError,
    JobNotFoundError,
    JobStateError,
    JobTimeoutError,
    RateLimitError,
    UnrecoverableError,
    ValidationError,
    WaitTimeoutError,
)
from .events import QueueEvents
from .flows import FlowProducer
from .job import Job
from .options import JobOptions
from .queue import Queue
from .schedulers import JobScheduler
from .sync import SyncJob
from .worker import Worker
from .workers import WorkerInfo

__version__ = "0.1.0"

__all__ = [
    "Connector",
    "Conveyor",
    "ConveyorError",
    "DurabilityError",
    "FlowProducer",
    "Job",
    "JobFailedError",
    "JobNotFoundError",
    "JobOptions",
    "JobScheduler",
    "JobStateError",
    "JobTimeoutError",
    "Queue",
    "QueueEvents",
    "RateLimitError",
    "SyncJob",
    "Task",
    "UnrecoverableError",
    "ValidationError",
    "WaitTimeoutError",
    "Worker",
    "WorkerInfo",
    "__version__",
]
