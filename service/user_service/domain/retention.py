"""Outbox retention: events older than the retention period are removed, a few at a time.

Every process runs it; deleting is idempotent, so replicas pruning at once only repeat each
other's work. The newest event is always kept, and the store records how far it pruned, so a
subscriber resuming from a removed id is told so (``EventsExpiredError``) instead of silently
missing events.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from user_service.domain.background import BackgroundTask
from user_service.domain.ports import UserStore

log = logging.getLogger(__name__)


class OutboxRetention(BackgroundTask):
    def __init__(self, store: UserStore, *, keep_for: timedelta, check_every: timedelta) -> None:
        super().__init__()
        self._store = store
        self._keep_for = keep_for
        self._check_every = check_every.total_seconds()

    def start(self) -> None:
        self._spawn(self._run(), "outbox-retention")

    async def prune_once(self) -> int:
        removed = await self._store.prune_events(older_than=datetime.now(UTC) - self._keep_for)
        if removed:
            log.info("outbox retention removed %d events older than %s", removed, self._keep_for)
        return removed

    async def _run(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception as error:  # the database may be away: try again next time
                log.warning("outbox retention skipped: %s", error)
            await asyncio.sleep(self._check_every)
