"""The gate a store's statements pass before they take a connection: open unless the store's
hooks limit connections (a fault on purpose: a pool starved down to one connection)."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager

from user_service.domain.ports import StoreHooks


class ConnectionGates:
    def __init__(self, hooks: StoreHooks) -> None:
        self._hooks = hooks
        self._gates: dict[int, asyncio.Semaphore] = {}  # connection limit -> its gate

    def gate(self) -> AbstractAsyncContextManager[object]:
        limit = self._hooks.connection_limit()
        if limit is None:
            return contextlib.nullcontext()
        gate = self._gates.get(limit)
        if gate is None:
            gate = self._gates[limit] = asyncio.Semaphore(limit)
        return gate
