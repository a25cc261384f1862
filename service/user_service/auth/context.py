"""The authenticated caller of the current RPC, for handlers, logs and spans."""

from __future__ import annotations

from contextvars import ContextVar

from user_service.auth.tokens import Principal

current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)
