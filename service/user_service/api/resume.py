"""Where a stream stands, for the message that ends it from outside the handler.

A long-lived stream can be ended by a layer around its handler (credentials that expire
mid-stream, for instance). A handler that can be resumed installs a ``ResumePoint`` and
keeps it current — one attribute write per message — so that whoever ends the stream can
tell the client where to pick up (``since_event_id=42``). Each RPC runs in its own task,
so the point never leaks between calls.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class ResumePoint:
    request_field: str  # the request field a client resumes with
    value: int | None = None


resume_point: ContextVar[ResumePoint | None] = ContextVar("resume_point", default=None)


def with_resume_hint(message: str) -> str:
    point = resume_point.get()
    if point is None or point.value is None:
        return message
    return f"{message}; resume with {point.request_field}={point.value}"
