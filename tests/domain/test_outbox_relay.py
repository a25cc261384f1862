"""The change feed across processes: two "replicas" — each its own store connection(s), broker,
relay and feed — on one database. A subscriber on one receives the writes of both, in event id
order, with no gap and no duplicate; it resumes across a restart; retention is explicit.

Runs on both backends. On PostgreSQL the relays' poll is set to a minute, so delivery within
the test proves the LISTEN/NOTIFY wake-up; on SQLite (no notifications) they poll every 50 ms.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import OpenStore, eventually
from user_service.domain.errors import EventsExpiredError
from user_service.domain.events import EventBroker
from user_service.domain.feed import ChangeFeed
from user_service.domain.models import NewUser, UserEvent
from user_service.domain.ports import UserStore
from user_service.domain.relay import OutboxRelay
from user_service.domain.users import UserDirectory
from user_service.store.postgres import PostgresUserStore


class Replica:
    """What one server process holds: its store handle, broker, relay, directory and feed."""

    def __init__(self, store: UserStore) -> None:
        poll = 60.0 if isinstance(store, PostgresUserStore) else 0.05
        self.store = store
        self.broker = EventBroker(buffer_size=10_000, max_subscribers=10)
        self.relay = OutboxRelay(store, self.broker, poll_interval=poll)
        self.directory = UserDirectory(store, self.relay)
        self.feed = ChangeFeed(store, self.broker)

    @classmethod
    async def start(cls, open_store: OpenStore) -> Replica:
        replica = cls(await open_store())
        await replica.relay.start()
        return replica

    async def stop(self) -> None:
        self.broker.close()
        await self.relay.stop()
        await self.store.close()

    async def create(self, name: str) -> int:
        return (await self.directory.create(NewUser(name, f"{name}@example.com"))).id


@pytest.fixture
async def replicas(open_store: OpenStore) -> AsyncIterator[tuple[Replica, Replica]]:
    first, second = await Replica.start(open_store), await Replica.start(open_store)
    yield first, second
    for replica in (first, second):
        await replica.stop()


async def _take(events: AsyncIterator[UserEvent], count: int, within: float = 10) -> list[int]:
    async with asyncio.timeout(within):
        return [(await anext(events)).event_id for _ in range(count)]


async def _subscribed(replica: Replica, since: int | None) -> AsyncGenerator[UserEvent, None]:
    """A feed on ``replica`` whose subscription is registered when this returns."""
    registered = asyncio.Event()

    async def on_subscribed() -> None:
        registered.set()

    events = replica.feed.events(since, on_subscribed=on_subscribed)
    first = asyncio.ensure_future(anext(events))
    await registered.wait()

    async def rest() -> AsyncGenerator[UserEvent, None]:
        try:
            yield await first
            async for event in events:
                yield event
        finally:
            first.cancel()
            await events.aclose()

    return rest()


async def test_a_subscriber_receives_the_writes_of_another_replica(replicas: tuple[Replica, Replica]) -> None:
    reader, writer = replicas
    async with aclosing(await _subscribed(reader, None)) as events:
        for index in range(5):
            await writer.create(f"w{index}")
        assert await _take(events, 5) == [1, 2, 3, 4, 5]


async def test_concurrent_writes_on_both_replicas_arrive_in_id_order_without_gaps(
    replicas: tuple[Replica, Replica],
) -> None:
    """Writers on both replicas at once: ids are drawn by two processes racing for the outbox,
    so a reader skipping an id that committed late would show here as a gap."""
    first, second = replicas
    async with (
        aclosing(await _subscribed(first, None)) as on_first,
        aclosing(await _subscribed(second, None)) as on_second,
    ):
        names = [
            (replica, f"{tag}{index}")
            for index in range(40)
            for replica, tag in ((first, "a"), (second, "b"))
        ]
        await asyncio.gather(*(replica.create(name) for replica, name in names))
        expected = list(range(1, len(names) + 1))
        assert await _take(on_first, len(names)) == expected
        assert await _take(on_second, len(names)) == expected


async def test_a_restarted_replica_resumes_its_subscriber_without_a_gap(open_store: OpenStore) -> None:
    writer, reader = await Replica.start(open_store), await Replica.start(open_store)
    try:
        async with aclosing(await _subscribed(reader, 0)) as events:
            for index in range(3):
                await writer.create(f"before{index}")
            seen = await _take(events, 3)
        await reader.stop()  # the reader's process goes away; writes go on elsewhere
        for index in range(3):
            await writer.create(f"during{index}")
        reader = await Replica.start(open_store)
        async with aclosing(await _subscribed(reader, seen[-1])) as events:
            await writer.create("after")
            seen += await _take(events, 4)
        assert seen == [1, 2, 3, 4, 5, 6, 7]
    finally:
        await writer.stop()
        await reader.stop()


async def test_resuming_below_the_retention_horizon_is_refused_with_the_horizon(
    replicas: tuple[Replica, Replica],
) -> None:
    first, _ = replicas
    for index in range(5):
        await first.create(f"u{index}")
    removed = await first.store.prune_events(older_than=datetime.now(UTC) + timedelta(days=1))
    assert removed == 4, "everything old enough, except the newest event"
    assert await first.store.event_horizon() == 4
    with pytest.raises(EventsExpiredError) as expired:
        await anext(first.feed.events(since_event_id=2))
    assert (expired.value.since_event_id, expired.value.pruned_through) == (2, 4)
    assert "since_event_id=4" in str(expired.value)
    async with aclosing(first.feed.events(since_event_id=4)) as events:
        assert await _take(events, 1) == [5], "from the horizon on, nothing is missing"


async def test_pruning_keeps_recent_events_and_moves_the_horizon_only_forward(
    replicas: tuple[Replica, Replica],
) -> None:
    first, second = replicas
    for index in range(3):
        await first.create(f"u{index}")
    assert await first.store.prune_events(older_than=datetime.now(UTC) - timedelta(hours=1)) == 0
    assert await second.store.prune_events(older_than=datetime.now(UTC) + timedelta(days=1)) == 2
    assert await first.store.prune_events(older_than=datetime.now(UTC) + timedelta(days=1)) == 0
    assert await first.store.event_horizon() == 2
    assert [e.event_id for e in await first.store.list_events(after_event_id=0, limit=10)] == [3]
    await eventually(lambda: first.relay.last_published == 3)
