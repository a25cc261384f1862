"""What only the PostgreSQL store has: migrations shared by replicas, and the outbox lock that
makes event ids commit in ascending order."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from user_service.domain.models import NewUser
from user_service.store import postgres
from user_service.store.postgres import PostgresUserStore


async def test_replicas_starting_together_apply_each_migration_once(postgres_url: str) -> None:
    stores = await asyncio.gather(*(PostgresUserStore.open(postgres_url) for _ in range(5)))
    for store in stores:
        await store.close()
    connection = await asyncpg.connect(postgres_url)
    try:
        applied = await connection.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    finally:
        await connection.close()
    assert [(row["version"], row["name"]) for row in applied] == [
        (migration.version, migration.name) for migration in postgres.migrations()
    ]


async def test_a_database_newer_than_the_server_is_refused(postgres_url: str) -> None:
    await (await PostgresUserStore.open(postgres_url)).close()
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute("INSERT INTO schema_migrations (version, name) VALUES (99, 'future.sql')")
    finally:
        await connection.close()
    with pytest.raises(RuntimeError, match="schema v99 is newer than this server"):
        await PostgresUserStore.open(postgres_url)


async def test_an_event_id_drawn_later_cannot_commit_before_an_earlier_one(postgres_url: str) -> None:
    """Another transaction draws event id 1 under the outbox lock and has not committed yet. A
    write now must wait for it: were it to draw id 2 and commit first, a feed reading "after
    0" would deliver 2 and never look back for 1."""
    store = await PostgresUserStore.open(postgres_url)
    earlier = await asyncpg.connect(postgres_url)
    try:
        transaction = earlier.transaction()
        await transaction.start()
        await earlier.execute("SELECT pg_advisory_xact_lock($1)", postgres._OUTBOX_LOCK)
        drawn = await earlier.fetchval(
            "INSERT INTO user_events (type, event_time, user_id, name, email, create_time,"
            " update_time, version) VALUES ('created', now(), 42, 'E', 'e@example.com', now(), now(), 1)"
            " RETURNING event_id"
        )
        later = asyncio.create_task(store.create_user(new_user=NewUser("L", "l@example.com")))
        await asyncio.sleep(0.3)
        assert not later.done(), "the later write waits for the outbox lock"
        assert await store.list_events(after_event_id=0, limit=10) == []
        await transaction.commit()
        assert (await later).event_id == drawn + 1
        listed = await store.list_events(after_event_id=0, limit=10)
        assert [event.event_id for event in listed] == [drawn, drawn + 1]
    finally:
        await earlier.close()
        await store.close()
