"""A ``UserStore`` decorator: a client span and a latency observation per store operation."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Histogram

from user_service.domain.errors import DomainError
from user_service.domain.models import NewUser, User, UserChanges, UserEvent
from user_service.domain.ports import UserStore
from user_service.faults import FaultFlags
from user_service.telemetry.faults import FaultTelemetry
from user_service.telemetry.metrics import ServiceMetrics, exemplar
from user_service.telemetry.tracing import traced_here

T = TypeVar("T")

# Store method -> (db.operation.name, db.collection.name). No statement text and no values:
# spans describe what kind of work ran, never whose data.
_OPERATIONS = {
    "get_user": ("SELECT", "users"),
    "list_users": ("SELECT", "users"),
    "count_users": ("SELECT", "users"),
    "create_user": ("INSERT", "users"),
    "update_user": ("UPDATE", "users"),
    "delete_user": ("DELETE", "users"),
    "list_events": ("SELECT", "user_events"),
    "last_event_id": ("SELECT", "user_events"),
    "event_horizon": ("SELECT", "outbox_horizon"),
    "prune_events": ("DELETE", "user_events"),
}


# A wait worth a span attribute: below a millisecond a connection was at hand, and the
# attribute would be on every span.
NOTABLE_WAIT_SECONDS = 0.001


class StoreTelemetryHooks:
    """``StoreHooks`` of an instrumented server: each statement's wait for a connection timed
    (and, when notable, on the store span), and the store faults of the fault flags applied —
    each struck statement's span carrying the flag's attributes."""

    def __init__(
        self, wait: Histogram | None, flags: FaultFlags | None, faults: FaultTelemetry | None
    ) -> None:
        self._wait = wait
        self._flags = flags
        self._faults = faults

    def statement_delay(self) -> float:
        slow = self._flags.current.slow_database if self._flags is not None else None
        if slow is None or not slow.strikes():
            return 0.0
        if self._faults is not None:
            self._faults.marked(slow.flag, "slow statement")
        return slow.delay_seconds

    def connection_limit(self) -> int | None:
        starved = self._flags.current.pool_starvation if self._flags is not None else None
        return starved.connections if starved is not None else None

    def connection_waited(self, seconds: float) -> None:
        if self._wait is not None:
            self._wait.observe(seconds)
        if seconds < NOTABLE_WAIT_SECONDS:
            return
        trace.get_current_span().set_attribute("db.client.connection.wait_time", seconds)
        starved = self._flags.current.pool_starvation if self._flags is not None else None
        if starved is not None and self._faults is not None:
            self._faults.elapsed(starved.flag, "connection wait", seconds)


class InstrumentedUserStore:
    """``tracer`` None: latency is still recorded, but no span is started (tracing is off)."""

    def __init__(
        self, store: UserStore, *, db_system: str, tracer: trace.Tracer | None, metrics: ServiceMetrics
    ) -> None:
        self._store = store
        self._db_system = db_system
        self._tracer = tracer
        self._histograms = {
            name: metrics.store_operation.labels(db_system, operation, collection)
            for name, (operation, collection) in _OPERATIONS.items()
        }

    async def _traced(self, name: str, operation: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            if self._tracer is None or not traced_here():
                return await operation
            return await self._in_span(self._tracer, name, operation)
        finally:
            self._histograms[name].observe(time.perf_counter() - start, exemplar())

    async def _in_span(self, tracer: trace.Tracer, name: str, operation: Awaitable[T]) -> T:
        db_operation, collection = _OPERATIONS[name]
        attributes = {
            "db.system.name": self._db_system,
            "db.operation.name": db_operation,
            "db.collection.name": collection,
        }
        with tracer.start_as_current_span(
            f"{db_operation} {collection}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await operation
            except DomainError as error:  # an expected outcome (not found, conflict): not a span error
                span.set_attribute("error.type", type(error).__name__)
                raise
            except Exception as error:
                span.set_attribute("error.type", type(error).__name__)
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise

    async def get_user(self, *, user_id: int) -> User:
        return await self._traced("get_user", self._store.get_user(user_id=user_id))

    async def list_users(self, *, after_id: int, limit: int) -> list[User]:
        return await self._traced("list_users", self._store.list_users(after_id=after_id, limit=limit))

    async def count_users(self) -> int:
        return await self._traced("count_users", self._store.count_users())

    async def create_user(self, *, new_user: NewUser) -> UserEvent:
        return await self._traced("create_user", self._store.create_user(new_user=new_user))

    async def update_user(
        self, *, user_id: int, changes: UserChanges, expected_version: int | None
    ) -> UserEvent:
        return await self._traced(
            "update_user",
            self._store.update_user(user_id=user_id, changes=changes, expected_version=expected_version),
        )

    async def delete_user(self, *, user_id: int, expected_version: int | None) -> UserEvent:
        return await self._traced(
            "delete_user", self._store.delete_user(user_id=user_id, expected_version=expected_version)
        )

    async def list_events(self, *, after_event_id: int, limit: int) -> list[UserEvent]:
        return await self._traced(
            "list_events", self._store.list_events(after_event_id=after_event_id, limit=limit)
        )

    async def last_event_id(self) -> int:
        return await self._traced("last_event_id", self._store.last_event_id())

    async def event_horizon(self) -> int:
        return await self._traced("event_horizon", self._store.event_horizon())

    async def prune_events(self, *, older_than: datetime) -> int:
        return await self._traced("prune_events", self._store.prune_events(older_than=older_than))

    async def watch_commits(self, on_commit: Callable[[], None]) -> None:
        await self._store.watch_commits(on_commit)

    async def close(self) -> None:
        await self._store.close()
