"""SQLite point reads run on the event loop, and fall back to a reader thread when SQLite
answers SQLITE_BUSY (the loop's connection never waits)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from user_service.domain.models import NewUser
from user_service.store.sqlite import SqliteUserStore


class _BusyConnection:
    """What a reader meets while SQLite recovers the WAL index: 'database is locked'."""

    def execute(self, *_: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")


async def test_a_busy_point_read_is_answered_by_a_reader_thread(tmp_path: Path) -> None:
    store = await SqliteUserStore.open(tmp_path / "users.db")
    try:
        created = await store.create_user(new_user=NewUser(name="Ada", email="ada@example.com"))
        assert (await store.get_user(user_id=created.user.id)).email == "ada@example.com"  # on the loop
        store._loop_reader = _BusyConnection()  # type: ignore[assignment]
        assert (await store.get_user(user_id=created.user.id)).email == "ada@example.com"  # in a thread
    finally:
        await store.close()


async def test_point_reads_see_every_acknowledged_write(tmp_path: Path) -> None:
    """The loop's connection reads the latest commit (WAL snapshot per statement), not a
    snapshot from when it was opened."""
    store = await SqliteUserStore.open(tmp_path / "users.db")
    try:
        for n in range(20):
            created = await store.create_user(new_user=NewUser(name=f"U{n}", email=f"u{n}@example.com"))
            assert (await store.get_user(user_id=created.user.id)).name == f"U{n}"
    finally:
        await store.close()
