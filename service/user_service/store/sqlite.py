"""SQLite backend: the embedded default.

Durability: WAL journal with ``synchronous=FULL``, so a write is on disk before it is
acknowledged and survives ``kill -9`` (and power loss). Concurrency: one writer thread
(SQLite allows one writer at a time anyway) and a small pool of reader threads, each
with its own connection; WAL lets readers run while the writer commits. Writes, scans
and anything that can take long run in those threads, so the event loop never waits on
an fsync or a large read, and a transaction is a single hop.

Point reads by primary key (GetUser, each id of LookupUsers) run on the event loop itself,
on a connection of their own: a WAL reader never waits for the writer, and such a read
touches a handful of pages that are almost always in SQLite's or the OS's cache — a few
microseconds, where the hop to a thread and back costs far more (and, with several
threads contending for the GIL, most of a call's time). That connection never waits
either (``busy_timeout=0``): in the rare moments SQLite answers SQLITE_BUSY to a reader
(WAL index recovery after a crash), the read is retried in a reader thread, which may wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from user_service.domain.clock import from_micros, now_micros, to_micros
from user_service.domain.errors import EmailTakenError, EtagMismatchError, UserNotFoundError
from user_service.domain.models import EventType, NewUser, User, UserChanges, UserEvent
from user_service.domain.ports import NO_STORE_HOOKS, StoreHooks
from user_service.store.gates import ConnectionGates

T = TypeVar("T")

_SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused
    name           TEXT    NOT NULL,
    email          TEXT    NOT NULL UNIQUE,
    create_time_us INTEGER NOT NULL,
    update_time_us INTEGER NOT NULL,
    version        INTEGER NOT NULL
);
-- The outbox: one row per committed change, written in the same transaction.
CREATE TABLE IF NOT EXISTS user_events (
    event_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    type           TEXT    NOT NULL,
    event_time_us  INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    name           TEXT    NOT NULL,
    email          TEXT    NOT NULL,
    create_time_us INTEGER NOT NULL,
    update_time_us INTEGER NOT NULL,
    version        INTEGER NOT NULL
);
-- v2: the highest event id removed by retention (one row).
CREATE TABLE IF NOT EXISTS outbox_horizon (
    singleton      INTEGER PRIMARY KEY CHECK (singleton = 1),
    pruned_through INTEGER NOT NULL
);
INSERT OR IGNORE INTO outbox_horizon (singleton, pruned_through) VALUES (1, 0);
"""
_USER_COLUMNS = "id, name, email, create_time_us, update_time_us, version"
_EVENT_COLUMNS = (
    "event_id, type, event_time_us, user_id, name, email, create_time_us, update_time_us, version"
)


class SqliteUserStore:
    """``UserStore`` on one SQLite database file."""

    def __init__(self, path: Path, *, readers: int = 4, hooks: StoreHooks = NO_STORE_HOOKS) -> None:
        self._path = path
        self._hooks = hooks
        self._gates = ConnectionGates(hooks)
        self._reader_count = readers
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._loop_reader: sqlite3.Connection | None = None  # point reads on the event loop

    @classmethod
    async def open(
        cls, path: Path, *, readers: int = 4, hooks: StoreHooks = NO_STORE_HOOKS
    ) -> SqliteUserStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(path, readers=readers, hooks=hooks)
        await store._write(_create_schema)
        await store._open_readers()
        store._loop_reader = store._connect(query_only=True, busy_timeout_ms=0)
        return store

    async def _open_readers(self) -> None:
        """Starts every reader thread with its connection now, not on first demand: the
        server holds the same threads and files from its first call to its last (a leak
        is then visible as growth), and a database that cannot be read fails the start."""
        started = threading.Barrier(self._reader_count, timeout=10)
        loop = asyncio.get_running_loop()
        await asyncio.gather(  # past the hooks: a connection limit would keep the barrier shut
            *(
                loop.run_in_executor(self._readers, self._call, lambda _: started.wait(), (), True, 0.0)
                for _ in range(self._reader_count)
            )
        )

    async def close(self) -> None:
        self._loop_reader = None  # closed with the others below
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown_threads)

    def _shutdown_threads(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    # -- reads ---------------------------------------------------------------

    async def get_user(self, *, user_id: int) -> User:
        delay = self._hooks.statement_delay()
        if self._loop_reader is not None and not delay and self._hooks.connection_limit() is None:
            with contextlib.suppress(sqlite3.OperationalError):  # SQLITE_BUSY: a reader thread waits
                return _select_user(self._loop_reader, user_id)
        return await self._run(self._readers, _select_user, (user_id,), query_only=True, delay=delay)

    async def list_users(self, *, after_id: int, limit: int) -> list[User]:
        rows = await self._read(
            _fetch_all,
            f"SELECT {_USER_COLUMNS} FROM users WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [_user_from_row(row) for row in rows]

    async def list_events(self, *, after_event_id: int, limit: int) -> list[UserEvent]:
        rows = await self._read(
            _fetch_all,
            f"SELECT {_EVENT_COLUMNS} FROM user_events WHERE event_id > ? ORDER BY event_id LIMIT ?",
            (after_event_id, limit),
        )
        return [_event_from_row(row) for row in rows]

    async def last_event_id(self) -> int:
        rows = await self._read(_fetch_all, "SELECT COALESCE(MAX(event_id), 0) FROM user_events", ())
        return int(rows[0][0])

    async def count_users(self) -> int:
        rows = await self._read(_fetch_all, "SELECT COUNT(*) FROM users", ())
        return int(rows[0][0])

    async def event_horizon(self) -> int:
        rows = await self._read(_fetch_all, "SELECT pruned_through FROM outbox_horizon", ())
        return int(rows[0][0])

    async def prune_events(self, *, older_than: datetime) -> int:
        return await self._write(_prune_events, to_micros(older_than))

    async def watch_commits(self, on_commit: Callable[[], None]) -> None:
        """SQLite cannot tell another process's commit: the change feed polls."""

    # -- writes --------------------------------------------------------------

    async def create_user(self, *, new_user: NewUser) -> UserEvent:
        return await self._write(_insert_user, new_user)

    async def update_user(
        self, *, user_id: int, changes: UserChanges, expected_version: int | None
    ) -> UserEvent:
        return await self._write(_update_user, user_id, changes, expected_version)

    async def delete_user(self, *, user_id: int, expected_version: int | None) -> UserEvent:
        return await self._write(_delete_user, user_id, expected_version)

    # -- threads -------------------------------------------------------------

    async def _read(self, operation: Callable[..., T], *args: Any) -> T:
        return await self._run(self._readers, operation, args, query_only=True)

    async def _write(self, operation: Callable[..., T], *args: Any) -> T:
        return await self._run(self._writer, operation, args, query_only=False)

    async def _run(
        self,
        executor: ThreadPoolExecutor,
        operation: Callable[..., T],
        args: tuple[Any, ...],
        *,
        query_only: bool,
        delay: float | None = None,
    ) -> T:
        """``operation`` on a thread of ``executor`` with its connection, after the hooks' gate
        (if they limit connections); a delay the hooks ask for is slept on that thread, which
        holds the connection meanwhile — where SQLite spends its time (a slow disk)."""
        loop = asyncio.get_running_loop()
        asked = time.perf_counter()
        async with self._gates.gate():
            self._hooks.connection_waited(time.perf_counter() - asked)
            if delay is None:
                delay = self._hooks.statement_delay()
            return await loop.run_in_executor(executor, self._call, operation, args, query_only, delay)

    def _call(self, operation: Callable[..., T], args: tuple[Any, ...], query_only: bool, delay: float) -> T:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect(query_only=query_only)
            self._local.connection = connection
        if delay:
            time.sleep(delay)
        return operation(connection, *args)

    def _connect(self, *, query_only: bool, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; writes use explicit BEGIN IMMEDIATE.
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit
        connection.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        if query_only:
            connection.execute("PRAGMA query_only=ON")
        with self._connections_lock:
            self._connections.append(connection)
        return connection


# -- SQL, run inside a store thread ---------------------------------------------


def _user_from_row(row: tuple[Any, ...]) -> User:
    user_id, name, email, create_us, update_us, version = row
    return User(user_id, name, email, from_micros(create_us), from_micros(update_us), version)


def _event_from_row(row: tuple[Any, ...]) -> UserEvent:
    event_id, event_type, event_us, *user_row = row
    return UserEvent(event_id, EventType(event_type), _user_from_row(tuple(user_row)), from_micros(event_us))


def _create_schema(connection: sqlite3.Connection) -> None:
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > _SCHEMA_VERSION:
        raise RuntimeError(f"database schema v{version} is newer than this server (v{_SCHEMA_VERSION})")
    connection.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={_SCHEMA_VERSION};COMMIT;")


def _fetch_all(connection: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return connection.execute(sql, params).fetchall()


def _select_user(connection: sqlite3.Connection, user_id: int) -> User:
    row = connection.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()
    if row is None:
        raise UserNotFoundError(user_id)
    return _user_from_row(row)


def _append_event(
    connection: sqlite3.Connection, event_type: EventType, user: User, event_us: int
) -> UserEvent:
    cursor = connection.execute(
        "INSERT INTO user_events (type, event_time_us, user_id, name, email, create_time_us,"
        " update_time_us, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event_type.value,
            event_us,
            user.id,
            user.name,
            user.email,
            to_micros(user.create_time),
            to_micros(user.update_time),
            user.version,
        ),
    )
    assert cursor.lastrowid is not None
    return UserEvent(cursor.lastrowid, event_type, user, from_micros(event_us))


def _in_transaction(connection: sqlite3.Connection, body: Callable[[], T]) -> T:
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = body()
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return result


def _insert_user(connection: sqlite3.Connection, new_user: NewUser) -> UserEvent:
    def body() -> UserEvent:
        now = now_micros()
        try:
            cursor = connection.execute(
                "INSERT INTO users (name, email, create_time_us, update_time_us, version)"
                " VALUES (?, ?, ?, ?, 1)",
                (new_user.name, new_user.email, now, now),
            )
        except sqlite3.IntegrityError as error:
            raise EmailTakenError(new_user.email) from error
        assert cursor.lastrowid is not None
        user = User(cursor.lastrowid, new_user.name, new_user.email, from_micros(now), from_micros(now), 1)
        return _append_event(connection, EventType.CREATED, user, now)

    return _in_transaction(connection, body)


def _check_version(user: User, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != user.version:
        raise EtagMismatchError(user.id, str(expected_version), user.etag)


def _update_user(
    connection: sqlite3.Connection, user_id: int, changes: UserChanges, expected_version: int | None
) -> UserEvent:
    def body() -> UserEvent:
        current = _select_user(connection, user_id)
        _check_version(current, expected_version)
        now = now_micros()
        updated = current.changed(changes, from_micros(now))
        try:
            connection.execute(
                "UPDATE users SET name = ?, email = ?, update_time_us = ?, version = ? WHERE id = ?",
                (updated.name, updated.email, to_micros(updated.update_time), updated.version, user_id),
            )
        except sqlite3.IntegrityError as error:
            raise EmailTakenError(updated.email) from error
        return _append_event(connection, EventType.UPDATED, updated, now)

    return _in_transaction(connection, body)


def _prune_events(connection: sqlite3.Connection, older_than_us: int) -> int:
    def body() -> int:
        (newest,) = connection.execute("SELECT COALESCE(MAX(event_id), 0) FROM user_events").fetchone()
        (through,) = connection.execute(
            "SELECT COALESCE(MAX(event_id), 0) FROM user_events WHERE event_time_us < ? AND event_id < ?",
            (older_than_us, newest),
        ).fetchone()
        if not through:
            return 0
        removed = connection.execute("DELETE FROM user_events WHERE event_id <= ?", (through,)).rowcount
        connection.execute(
            "UPDATE outbox_horizon SET pruned_through = MAX(pruned_through, ?) WHERE singleton = 1",
            (through,),
        )
        return int(removed)

    return _in_transaction(connection, body)


def _delete_user(connection: sqlite3.Connection, user_id: int, expected_version: int | None) -> UserEvent:
    def body() -> UserEvent:
        current = _select_user(connection, user_id)
        _check_version(current, expected_version)
        connection.execute("DELETE FROM users WHERE id = ?", (user_id,))
        return _append_event(connection, EventType.DELETED, current, now_micros())

    return _in_transaction(connection, body)
