"""The change feed: replay of stored events joined seamlessly to live ones.

Correctness argument (no gap, no duplicate, ascending event_id):
1. The subscription is registered with the broker *before* the store is read, so an
   event is either committed before a read (the read returns it) or published after
   registration (the buffer holds it) — or both, and duplicates are dropped by id.
2. While replaying, the live buffer may overflow (the replay was slow); then the
   buffer is discarded and the store read again from the last delivered id, until a
   full catch-up finishes without an overflow. Replay never cuts a subscriber off.
3. Once live, an overflow means the subscriber cannot keep up with the write rate:
   it is ended with ``SubscriberTooSlowError`` carrying the id to resume from.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator

from user_service.domain.errors import FeedClosedError, SubscriberTooSlowError, SubscriptionExpiredError
from user_service.domain.events import EventBroker, Subscription
from user_service.domain.models import UserEvent
from user_service.store.base import UserStore


class ChangeFeed:
    def __init__(self, store: UserStore, broker: EventBroker, *, replay_batch_size: int = 256) -> None:
        self._store = store
        self._broker = broker
        self._replay_batch_size = replay_batch_size

    @property
    def broker(self) -> EventBroker:
        return self._broker

    async def events(
        self, since_event_id: int | None, *, expires_at: float | None = None
    ) -> AsyncGenerator[UserEvent, None]:
        """Events after ``since_event_id`` then live ones; ``None`` means live only.

        ``expires_at`` (UNIX seconds) ends the stream with ``SubscriptionExpiredError``
        when the subscriber's credentials run out, even if no event arrives. Close the
        iterator (``contextlib.aclosing``) to release its subscription at once.
        """
        subscription = self._broker.subscribe()
        try:
            if since_event_id is None:
                last = await self._store.last_event_id()
            else:
                last = since_event_id
                while True:
                    subscription.rearm()
                    async for event in self._replay(after=last, subscription=subscription):
                        _raise_if_expired(expires_at, last)
                        yield event
                        last = event.event_id
                    if not subscription.overflowed:
                        break
            while True:
                await _wait(subscription, expires_at, last)
                self._raise_if_ended(subscription, last)
                while (live := subscription.pop_nowait()) is not None:
                    if live.event_id > last:
                        yield live
                        last = live.event_id
        finally:
            subscription.unsubscribe()

    async def _replay(self, *, after: int, subscription: Subscription) -> AsyncIterator[UserEvent]:
        while True:
            if subscription.closed:
                raise FeedClosedError(after)
            batch = await self._store.list_events(after_event_id=after, limit=self._replay_batch_size)
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


def _raise_if_expired(expires_at: float | None, last: int) -> None:
    if expires_at is not None and time.time() >= expires_at:
        raise SubscriptionExpiredError(last)


async def _wait(subscription: Subscription, expires_at: float | None, last: int) -> None:
    if expires_at is None:
        await subscription.wait()
        return
    _raise_if_expired(expires_at, last)
    try:
        await asyncio.wait_for(subscription.wait(), timeout=expires_at - time.time())
    except TimeoutError:
        raise SubscriptionExpiredError(last) from None
