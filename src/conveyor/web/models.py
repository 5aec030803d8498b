"""Pydantic models of the REST API's request bodies and of its envelope: every
response is ``{"success": true, "data": ...}`` or ``{"success": false,
"error": {...}}``. What ``data`` holds is described in :mod:`.schemas`."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..options import MAX_JOB_NAME

T = TypeVar("T")

CleanState = Literal["completed", "failed", "waiting", "prioritized", "delayed", "active"]


class Ok(BaseModel, Generic[T]):
    """A successful answer."""

    success: Literal[True] = True
    data: T


class ErrorDetail(BaseModel):
    code: str = Field(description="queue_not_found, job_not_found, validation_error, "
                                  "unauthorized, job_state_conflict, not_found, ...")
    message: str
    field: str | None = Field(default=None, description="The refused field (validation errors).")


class ErrorResponse(BaseModel):
    """A refused request."""

    success: Literal[False] = False
    error: ErrorDetail


class Body(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class NewJob(Body):
    name: str = Field(min_length=1, max_length=MAX_JOB_NAME,
                      description=f"The job's name (at most {MAX_JOB_NAME} characters).")
    data: Any = None
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of Queue.add: job_id, delay (ms), priority, attempts, backoff, "
                    "lifo, timeout, remove_on_complete, remove_on_fail, deduplication, "
                    "dead_letter_queue, group.",
    )


class RetryAll(Body):
    state: Literal["failed", "completed"] = "failed"


class Clean(Body):
    state: CleanState = "completed"
    grace_ms: int = Field(default=0, ge=0, le=10**15, description="Only jobs at least this old.")
    limit: int | None = Field(default=None, ge=1, le=10**9, description="At most this many.")


class CamelClean(Body):
    limit: int | None = Field(default=None, ge=1, le=10**9)
    state: CleanState = "failed"
    graceMs: int = Field(default=0, ge=0, le=10**15)
