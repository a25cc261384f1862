"""In-process fan-out of committed events to live subscribers, with bounded memory.

Each subscription owns a bounded buffer. ``publish`` never blocks and never grows a
buffer past its bound: a subscription whose buffer is full is marked *overflowed*
and its buffer is dropped at once. What an overflow means is up to the reader — the
change feed (``feed.py``) catches up from the store during replay and cuts the
subscriber off once it is live.

Events must be published in ``event_id`` order; the caller guarantees it.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable

from user_service.domain.errors import TooManySubscribersError, TooManySubscriptionsError
from user_service.domain.models import UserEvent


class Subscription:
    """One subscriber's bounded buffer of live events."""

    def __init__(self, broker: EventBroker, buffer_size: int, subscriber: str) -> None:
        self._broker = broker
        self.buffer_size = buffer_size
        self.subscriber = subscriber
        # The id of the last event handed to the reader (kept by the change feed).
        self.position = 0
        # Called (by the publisher) with ``position`` the moment the buffer overflows: lets
        # the reader interrupt a delivery blocked on a client which stopped reading.
        self.on_overflow: Callable[[int], None] | None = None
        self._buffer: deque[UserEvent] = deque()
        self._wakeup = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def __len__(self) -> int:
        return len(self._buffer)

    def _offer(self, event: UserEvent) -> None:
        if self.overflowed or self.closed:
            return
        if len(self._buffer) >= self.buffer_size:
            self.overflowed = True
            self._buffer.clear()
            if self.on_overflow is not None:
                self.on_overflow(self.position)
        else:
            self._buffer.append(event)
        self._wakeup.set()

    def _close(self) -> None:
        self.closed = True
        self._buffer.clear()
        self._wakeup.set()

    def rearm(self) -> None:
        """Forgets everything buffered and any overflow; the caller re-reads from the store."""
        self._buffer.clear()
        self.overflowed = False

    def pop_nowait(self) -> UserEvent | None:
        return self._buffer.popleft() if self._buffer else None

    async def wait(self) -> None:
        """Returns once an event is buffered, or the subscription overflowed or closed."""
        while not (self._buffer or self.overflowed or self.closed):
            self._wakeup.clear()
            await self._wakeup.wait()

    def unsubscribe(self) -> None:
        self._broker._remove(self)
        self._buffer.clear()


class EventBroker:
    """Hands every published event to every subscription, never blocking the publisher."""

    def __init__(
        self, *, buffer_size: int, max_subscribers: int, max_per_subscriber: int | None = None
    ) -> None:
        self._buffer_size = buffer_size
        self._max_subscribers = max_subscribers
        self._max_per_subscriber = max_per_subscriber or max_subscribers
        self._subscriptions: set[Subscription] = set()
        self._per_subscriber: Counter[str] = Counter()
        self._closed = False

    @property
    def buffer_size(self) -> int:
        return self._buffer_size

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    @property
    def buffered_events(self) -> int:
        """Events held in all buffers together: at most subscribers x buffer size."""
        return sum(len(s) for s in self._subscriptions)

    def subscribe(self, subscriber: str = "") -> Subscription:
        """A new subscription for ``subscriber`` (who asks: one caller may hold at most
        ``max_per_subscriber`` of the ``max_subscribers`` slots)."""
        if len(self._subscriptions) >= self._max_subscribers:
            raise TooManySubscribersError(self._max_subscribers)
        if self._per_subscriber[subscriber] >= self._max_per_subscriber:
            raise TooManySubscriptionsError(self._max_per_subscriber)
        subscription = Subscription(self, self._buffer_size, subscriber)
        if self._closed:
            subscription._close()
        else:
            self._subscriptions.add(subscription)
            self._per_subscriber[subscriber] += 1
        return subscription

    def publish(self, event: UserEvent) -> None:
        for subscription in self._subscriptions:
            subscription._offer(event)

    def close(self) -> None:
        """Ends every subscription (server shutdown); later ones start closed."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription._close()
        self._subscriptions.clear()
        self._per_subscriber.clear()

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
            self._per_subscriber[subscription.subscriber] -= 1
            if not self._per_subscriber[subscription.subscriber]:
                del self._per_subscriber[subscription.subscriber]
