"""The domain's port to storage: the contract it needs, owned here beside the code that calls
it, and fulfilled by the backends in ``user_service.store`` (``tests/store`` checks each one).

Every write commits the user row and its event row in one transaction (an outbox),
so the change feed can never disagree with the data. Methods are async, take
keyword arguments, return domain models and raise the storage-neutral errors of
``user_service.domain.errors``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from user_service.domain.models import NewUser, User, UserChanges, UserEvent


class UserStore(Protocol):
    async def get_user(self, *, user_id: int) -> User:
        """Raises ``UserNotFoundError``."""
        ...

    async def list_users(self, *, after_id: int, limit: int) -> list[User]:
        """Users with id greater than ``after_id`` in ascending id order, at most ``limit``."""
        ...

    async def create_user(self, *, new_user: NewUser) -> UserEvent:
        """Raises ``EmailTakenError``. Returns the CREATED event (holding the new user)."""
        ...

    async def update_user(
        self, *, user_id: int, changes: UserChanges, expected_version: int | None
    ) -> UserEvent:
        """Raises ``UserNotFoundError``, ``EtagMismatchError``, ``EmailTakenError``."""
        ...

    async def delete_user(self, *, user_id: int, expected_version: int | None) -> UserEvent:
        """Raises ``UserNotFoundError``, ``EtagMismatchError``."""
        ...

    async def list_events(self, *, after_event_id: int, limit: int) -> list[UserEvent]:
        """Events with id greater than ``after_event_id`` in ascending order, at most ``limit``."""
        ...

    async def last_event_id(self) -> int:
        """The newest committed event id, 0 when there is none."""
        ...

    async def count_users(self) -> int: ...

    async def event_horizon(self) -> int:
        """The highest event id removed by retention (0 while none was): events after it are
        all still listed; ``list_events`` after an id below it would silently miss some."""
        ...

    async def prune_events(self, *, older_than: datetime) -> int:
        """Removes events older than ``older_than`` — never the newest one — and moves the
        horizon past them; returns how many were removed."""
        ...

    async def watch_commits(self, on_commit: Callable[[], None]) -> None:
        """Calls ``on_commit`` (on the event loop) whenever another process may have committed
        events. Stores without notifications do nothing: the change feed polls them."""
        ...

    async def close(self) -> None: ...


class StoreHooks(Protocol):
    """What a backend asks and tells around each statement, beyond the data: how long it waited
    for a connection (telemetry), and faults on purpose (``user_service.faults``) — a statement
    slowed inside the database, a pool held to fewer connections. Called on the event loop in
    the calling task, so an implementation may annotate the caller's span."""

    def statement_delay(self) -> float:
        """Seconds the next statement is to take longer, spent where the database spends its
        time (0: none — always, but for a fault on purpose)."""
        ...

    def connection_limit(self) -> int | None:
        """At most this many statements hold a connection at once (None: the pool's size)."""
        ...

    def connection_waited(self, seconds: float) -> None:
        """A statement got its connection after waiting ``seconds``."""
        ...


class NoStoreHooks:
    """No hooks: a store opened by tests or tools, or by a server with metrics and flags off."""

    def statement_delay(self) -> float:
        return 0.0

    def connection_limit(self) -> int | None:
        return None

    def connection_waited(self, seconds: float) -> None:
        """Nothing to tell: no telemetry."""


NO_STORE_HOOKS: StoreHooks = NoStoreHooks()
