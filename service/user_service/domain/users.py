"""Use cases over users: reads, writes, and the announcement of each committed change."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from user_service.domain.models import NewUser, User, UserChanges, UserEvent
from user_service.domain.pagination import PageRequest, encode_page_token
from user_service.domain.ports import UserStore


class CommitListener(Protocol):
    """Told of each change this process commits (the outbox relay, which publishes it)."""

    def committed(self, event: UserEvent) -> None: ...


class UserDirectory:
    """The user use cases. Inputs arrive validated (see ``validation.FieldChecks``)."""

    def __init__(self, store: UserStore, listener: CommitListener) -> None:
        self._store = store
        self._listener = listener
        # Writes still running after their caller was cancelled (see _commit).
        self._detached_writes: set[asyncio.Task[UserEvent]] = set()

    async def get(self, user_id: int) -> User:
        return await self._store.get_user(user_id=user_id)

    async def list_page(self, page: PageRequest) -> tuple[list[User], str]:
        """One page of users and the token of the next page ("" after the last one)."""
        users = await self._store.list_users(after_id=page.after_id, limit=page.size + 1)
        if len(users) <= page.size:
            return users, ""
        users = users[: page.size]
        return users, encode_page_token(users[-1].id)

    async def create(self, new_user: NewUser) -> User:
        event = await self._commit(lambda: self._store.create_user(new_user=new_user))
        return event.user

    async def update(self, user_id: int, changes: UserChanges, expected_version: int | None) -> User:
        event = await self._commit(
            lambda: self._store.update_user(
                user_id=user_id, changes=changes, expected_version=expected_version
            )
        )
        return event.user

    async def delete(self, user_id: int, expected_version: int | None) -> None:
        await self._commit(
            lambda: self._store.delete_user(user_id=user_id, expected_version=expected_version)
        )

    async def _commit(self, write: Callable[[], Awaitable[UserEvent]]) -> UserEvent:
        """Runs a write and announces its event, even if the caller is cancelled meanwhile.

        A write the store has started may commit whatever the caller does; it must then
        still finish in this process (and be announced, so subscribers get it at once) —
        so the write runs as its own task, shielded from the caller. Subscribers receive
        events from the outbox relay, in event id order, whichever process wrote them.
        """
        task = asyncio.create_task(self._commit_and_announce(write))
        self._detached_writes.add(task)
        task.add_done_callback(self._forget_write)
        return await asyncio.shield(task)

    async def _commit_and_announce(self, write: Callable[[], Awaitable[UserEvent]]) -> UserEvent:
        event = await write()
        self._listener.committed(event)
        return event

    def _forget_write(self, task: asyncio.Task[UserEvent]) -> None:
        self._detached_writes.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failure after the caller left is not "unhandled"

    async def drain(self) -> None:
        """Waits for writes whose callers were cancelled (called before the store closes)."""
        if self._detached_writes:
            await asyncio.gather(*self._detached_writes, return_exceptions=True)
