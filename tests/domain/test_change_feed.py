"""ChangeFeed against a real SQLite store, fed by the outbox relay: the replay/live join and
its edge cases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import eventually
from user_service.domain.errors import FeedClosedError, SubscriberTooSlowError
from user_service.domain.events import EventBroker
from user_service.domain.feed import ChangeFeed
from user_service.domain.models import EventType, NewUser, User, UserEvent
from user_service.domain.relay import OutboxRelay
from user_service.domain.users import UserDirectory
from user_service.store.sqlite import SqliteUserStore


class World:
    def __init__(self, store: SqliteUserStore, buffer_size: int, replay_batch_size: int) -> None:
        self.broker = EventBroker(buffer_size=buffer_size, max_subscribers=10)
        self.relay = OutboxRelay(store, self.broker, poll_interval=0.05)
        self.directory = UserDirectory(store, self.relay)
        self.feed = ChangeFeed(store, self.broker, replay_batch_size=replay_batch_size)
        self._serial = 0

    async def write(self, count: int) -> None:
        """Creates ``count`` users, then waits until the relay has published their events."""
        for _ in range(count):
            self._serial += 1
            user = await self.directory.create(NewUser(f"u{self._serial}", f"u{self._serial}@example.com"))
        if count:
            await eventually(lambda: self.relay.last_published >= user.id)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteUserStore]:
    store = await SqliteUserStore.open(tmp_path / "feed.db")
    yield store
    await store.close()


@pytest.fixture
async def world_of(store: SqliteUserStore) -> AsyncIterator[Callable[..., Awaitable[World]]]:
    """Builds a World on the test's store with its relay running; stops the relays after."""
    worlds: list[World] = []

    async def build(*, buffer_size: int, replay_batch_size: int) -> World:
        world = World(store, buffer_size, replay_batch_size)
        await world.relay.start()
        worlds.append(world)
        return world

    yield build
    for world in worlds:
        await world.relay.stop()


async def _ids(events: AsyncIterator[UserEvent], count: int) -> list[int]:
    return [(await anext(events)).event_id for _ in range(count)]


async def test_overflow_during_replay_reads_the_store_again_instead_of_cutting_off(
    world_of: Callable[..., Awaitable[World]],
) -> None:
    world = await world_of(buffer_size=4, replay_batch_size=10)
    await world.write(50)
    async with aclosing(world.feed.events(since_event_id=0)) as events:
        first = await _ids(events, 1)
        await world.write(20)  # overflows the 4-event buffer while the replay is in progress
        rest = await _ids(events, 69)
        await world.write(1)
        live = await _ids(events, 1)
    assert first + rest + live == list(range(1, 72))


async def test_events_committed_during_replay_are_delivered_once(
    world_of: Callable[..., Awaitable[World]],
) -> None:
    world = await world_of(buffer_size=100, replay_batch_size=5)
    await world.write(12)
    async with aclosing(world.feed.events(since_event_id=0)) as events:
        head = await _ids(events, 3)
        await world.write(3)  # both in the buffer and in the next store batch
        tail = await _ids(events, 12)
    assert head + tail == list(range(1, 16))


async def _first_live_event(world: World, events: AsyncIterator[UserEvent]) -> asyncio.Task[UserEvent]:
    """Starts waiting for the next event; returns once the feed's subscription is registered."""

    async def next_event() -> UserEvent:
        return await anext(events)

    waiting = asyncio.create_task(next_event())
    await eventually(lambda: world.broker.subscriber_count == 1)
    return waiting


async def test_a_live_subscriber_that_overflows_is_told_where_to_resume(
    world_of: Callable[..., Awaitable[World]],
) -> None:
    world = await world_of(buffer_size=3, replay_batch_size=10)
    async with aclosing(world.feed.events(since_event_id=None)) as events:
        first = await _first_live_event(world, events)
        await world.write(1)
        assert (await first).event_id == 1
        await world.write(4)
        with pytest.raises(SubscriberTooSlowError) as caught:
            await anext(events)
    assert caught.value.last_event_id == 1
    assert world.broker.subscriber_count == 0


async def test_live_only_subscriber_skips_history_and_resumes_from_the_head(
    world_of: Callable[..., Awaitable[World]],
) -> None:
    world = await world_of(buffer_size=2, replay_batch_size=10)
    await world.write(5)
    async with aclosing(world.feed.events(since_event_id=None)) as events:
        first = await _first_live_event(world, events)
        await asyncio.sleep(0.05)  # let the feed read the head (event 5)
        for event_id in (6, 7, 8):  # published back to back: overflows before the reader runs
            world.broker.publish(_event(event_id))
        with pytest.raises(SubscriberTooSlowError) as caught:
            await first
    assert caught.value.last_event_id == 5, "resume point is the head at subscribe time"


def _event(event_id: int) -> UserEvent:
    now = datetime.now(UTC)
    return UserEvent(event_id, EventType.CREATED, User(event_id, "n", "e@example.com", now, now, 1), now)


async def test_closing_the_broker_ends_feeds_with_their_resume_point(
    world_of: Callable[..., Awaitable[World]],
) -> None:
    world = await world_of(buffer_size=10, replay_batch_size=10)
    await world.write(2)
    async with aclosing(world.feed.events(since_event_id=0)) as events:
        await _ids(events, 2)
        world.broker.close()
        with pytest.raises(FeedClosedError) as caught:
            await anext(events)
    assert caught.value.last_event_id == 2


async def test_closing_the_iterator_unsubscribes(world_of: Callable[..., Awaitable[World]]) -> None:
    world = await world_of(buffer_size=10, replay_batch_size=10)
    await world.write(1)
    async with aclosing(world.feed.events(since_event_id=0)) as events:
        await _ids(events, 1)
        assert world.broker.subscriber_count == 1
    assert world.broker.subscriber_count == 0
