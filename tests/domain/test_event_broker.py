"""EventBroker: fan-out that never blocks the publisher and never exceeds its memory bound."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from user_service.domain.errors import TooManySubscribersError
from user_service.domain.events import EventBroker
from user_service.domain.models import EventType, User, UserEvent


def _event(event_id: int) -> UserEvent:
    now = datetime.now(UTC)
    return UserEvent(event_id, EventType.CREATED, User(event_id, "n", "e@example.com", now, now, 1), now)


async def test_every_subscription_gets_every_event_in_order() -> None:
    broker = EventBroker(buffer_size=10, max_subscribers=5)
    first, second = broker.subscribe(), broker.subscribe()
    for event_id in (1, 2, 3):
        broker.publish(_event(event_id))
    for subscription in (first, second):
        await subscription.wait()
        delivered = [subscription.pop_nowait() for _ in range(4)]
        assert [event.event_id if event else None for event in delivered] == [1, 2, 3, None]


def test_a_full_buffer_overflows_and_drops_its_events_at_once() -> None:
    broker = EventBroker(buffer_size=3, max_subscribers=5)
    slow, fast = broker.subscribe(), broker.subscribe()
    for event_id in range(1, 4):
        broker.publish(_event(event_id))
    fast.pop_nowait()
    broker.publish(_event(4))
    assert slow.overflowed
    assert len(slow) == 0
    assert not fast.overflowed
    assert len(fast) == 3
    assert broker.buffered_events == 3


def test_rearm_clears_an_overflow() -> None:
    broker = EventBroker(buffer_size=1, max_subscribers=5)
    subscription = broker.subscribe()
    broker.publish(_event(1))
    broker.publish(_event(2))
    subscription.rearm()
    broker.publish(_event(3))
    assert not subscription.overflowed
    delivered = subscription.pop_nowait()
    assert delivered is not None
    assert delivered.event_id == 3


def test_subscriber_limit() -> None:
    broker = EventBroker(buffer_size=1, max_subscribers=2)
    first = broker.subscribe()
    broker.subscribe()
    with pytest.raises(TooManySubscribersError):
        broker.subscribe()
    first.unsubscribe()
    broker.subscribe()


async def test_close_wakes_and_ends_every_subscription_and_later_ones() -> None:
    broker = EventBroker(buffer_size=5, max_subscribers=5)
    subscription = broker.subscribe()
    broker.publish(_event(1))
    broker.close()
    await subscription.wait()
    assert subscription.closed
    assert len(subscription) == 0
    assert broker.subscriber_count == 0
    assert broker.subscribe().closed
