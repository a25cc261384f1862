"""Where a stream stands, for the message that ends it from outside the handler.

A long-lived stream can be ended by a layer around its handler (credentials that expire
mid-stream, for instance). Handlers that can be resumed keep ``resume_hint`` current —
e.g. ``since_event_id=42`` — so that whoever ends the stream can tell the client where to
pick up. Each RPC runs in its own task, so the value never leaks between calls.
"""

from __future__ import annotations

from contextvars import ContextVar

resume_hint: ContextVar[str | None] = ContextVar("resume_hint", default=None)


def with_resume_hint(message: str) -> str:
    hint = resume_hint.get()
    return message if hint is None else f"{message}; resume with {hint}"
