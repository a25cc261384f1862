"""The outbox relay: every committed event, from whichever process committed it, reaches this
process's live subscribers — in ``event_id`` order, without a gap or a duplicate.

Workers and replicas share one store; a write is committed by one of them. Publishing only
what this process wrote would leave every other process's subscribers blind to it. So the
broker is fed from the outbox, never from the write path: the relay tails the store by event
id and publishes each event it reads. Correctness rests on one property of the stores: event
ids are committed in ascending order (SQLite: one writer at a time; PostgreSQL: ids drawn under
a lock held until commit — see ``store/postgres.py``). Then "all events after the last one
published" is a complete answer whenever it is read, and tailing by id can skip nothing.

What wakes the relay: a write in this process (``committed``), the store's notification of
another process's commit where it has one (PostgreSQL LISTEN/NOTIFY), and, as the safety net
for lost notifications and stores without them (SQLite), a poll every ``poll_interval``.
A store that is unreachable just delays the relay: it retries, and resumes after the last
event it published, so nothing is lost when the database comes back. ``pause`` holds the relay
the same way (a fault on purpose, ``user_service.faults``): the events wait in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from user_service.domain.background import BackgroundTask
from user_service.domain.errors import StoreUnavailableError
from user_service.domain.events import EventBroker
from user_service.domain.models import UserEvent
from user_service.domain.ports import UserStore

log = logging.getLogger(__name__)


class OutboxRelay(BackgroundTask):
    def __init__(
        self,
        store: UserStore,
        broker: EventBroker,
        *,
        poll_interval: float,
        batch_size: int = 256,
        retry_delay: float = 1.0,
    ) -> None:
        super().__init__()
        self._store = store
        self._broker = broker
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._retry_delay = retry_delay
        self._wake = asyncio.Event()
        self._last = 0
        self._paused = False

    @property
    def last_published(self) -> int:
        return self._last

    async def start(self) -> None:
        """Publishes what is committed from now on (subscribers replay the past from the store)."""
        self._last = await self._store.last_event_id()
        await self._store.watch_commits(self.nudge)
        self._spawn(self._run(), "outbox-relay")

    def committed(self, event: UserEvent) -> None:
        """A write of this process committed ``event``: publish it (and whatever precedes it)."""
        self.nudge()

    def nudge(self) -> None:
        self._wake.set()

    def pause(self) -> None:
        """Stops publishing until ``resume``; commits go on and wait in the outbox."""
        self._paused = True

    def resume(self) -> None:
        """Publishes, in order, what was committed meanwhile, and goes on."""
        self._paused = False
        self.nudge()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            if self._paused:
                continue
            try:
                await self.catch_up()
            except StoreUnavailableError as error:
                log.warning("change feed paused: %s", error)
                await asyncio.sleep(self._retry_delay)
                self._wake.set()
            except Exception:  # never let the relay die: subscribers would silently stop
                log.exception("change feed relay failed; retrying")
                await asyncio.sleep(self._retry_delay)
                self._wake.set()

    async def catch_up(self) -> None:
        """Publishes every event committed after the last one published."""
        while True:
            events = await self._store.list_events(after_event_id=self._last, limit=self._batch_size)
            for event in events:
                self._broker.publish(event)
                self._last = event.event_id
            if len(events) < self._batch_size:
                return
