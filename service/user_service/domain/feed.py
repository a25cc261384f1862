"""The change feed: replay of stored events joined seamlessly to live ones.

Correctness argument (no gap, no duplicate, ascending event_id):
1. The subscription is registered with the broker *before* the store is read, so an
   event is either committed before a read (the read returns it) or published after
   registration (the buffer holds it) — or both, and duplicates are dropped by id.
2. While replaying, the live buffer may overflow (the replay was slow); then the
   buffer is discarded and the store read again from the last delivered id, until a
   full catch-up finishes without an overflow. Replay never cuts a subscriber off.
3. Retention removes old events from the store. A replay that starts (or, being slow, finds
   itself) below the retention horizon ends with ``EventsExpiredError`` instead of skipping
   the removed events: after each batch is read the horizon is read too, and the batch is
   only delivered when every event after the batch's starting point was still there.
4. Once live, an overflow means the subscriber cannot keep up with the write rate:
   it is ended with ``SubscriberTooSlowError`` carrying the id to resume from. The
   overflow is also signalled at once (``on_behind``), because a reader blocked on a
   client that stopped reading would otherwise never come back to notice it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from user_service.domain.errors import EventsExpiredError, FeedClosedError, SubscriberTooSlowError
from user_service.domain.events import EventBroker, Subscription
from user_service.domain.models import UserEvent
from user_service.domain.ports import UserStore


class ChangeFeed:
    def __init__(self, store: UserStore, broker: EventBroker, *, replay_batch_size: int = 256) -> None:
        self._store = store
        self._broker = broker
        self._replay_batch_size = replay_batch_size

    @property
    def buffer_size(self) -> int:
        """Live events a subscriber may fall behind before it is cut off."""
        return self._broker.buffer_size

    async def events(
        self,
        since_event_id: int | None,
        *,
        subscriber: str = "",
        on_behind: Callable[[int], None] | None = None,
        on_subscribed: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncGenerator[UserEvent, None]:
        """Events after ``since_event_id`` then live ones; ``None`` means live only.

        ``subscriber`` names who asks (for the per-caller subscription limit).
        ``on_behind`` is called from the publishing side, with the id of the last event
        handed out, the moment this subscriber, once live, falls a whole buffer behind;
        the next read then raises ``SubscriberTooSlowError``. ``on_subscribed`` is awaited
        once the subscription is registered: from then on, every committed event reaches
        this subscriber. Close the iterator (``contextlib.aclosing``) to release its
        subscription at once.
        """
        subscription = self._broker.subscribe(subscriber)
        try:
            if on_subscribed is not None:
                await on_subscribed()
            if since_event_id is None:
                last = await self._store.last_event_id()
            else:
                last = since_event_id
                while True:
                    subscription.rearm()
                    async for event in self._replay(after=last, subscription=subscription):
                        subscription.position = last = event.event_id
                        yield event
                    if not subscription.overflowed:
                        break
            subscription.position = last
            subscription.on_overflow = on_behind
            while True:
                await subscription.wait()
                self._raise_if_ended(subscription, last)
                while (live := subscription.pop_nowait()) is not None:
                    if live.event_id > last:
                        subscription.position = last = live.event_id
                        yield live
        finally:
            subscription.unsubscribe()

    async def _replay(self, *, after: int, subscription: Subscription) -> AsyncIterator[UserEvent]:
        while True:
            if subscription.closed:
                raise FeedClosedError(after)
            batch = await self._store.list_events(after_event_id=after, limit=self._replay_batch_size)
            horizon = await self._store.event_horizon()
            if after < horizon:
                raise EventsExpiredError(after, horizon)
            for event in batch:
                yield event
                after = event.event_id
            if len(batch) < self._replay_batch_size:
                return

    @staticmethod
    def _raise_if_ended(subscription: Subscription, last: int) -> None:
        if subscription.closed:
            raise FeedClosedError(last)
        if subscription.overflowed:
            raise SubscriberTooSlowError(subscription.buffer_size, last)
