"""Login throttling: scrypt is deliberately expensive, so guessing must be kept cheap for us.

Each secret check costs ~30-50 ms of CPU and 16 MiB. Without limits, a few dozen
concurrent wrong logins take the CPU from every other call and the memory with it. So:

* **per peer** (the caller's host), every attempt spends a token from a bucket;
* **per client id**, every *failed* attempt does — a guesser is slowed down wherever it
  comes from, while a client that logs in correctly is never held back by its own
  successes (the price: a guesser can delay a real client's next login by the refill time);
* at most ``max_concurrent`` checks run at once, in a pool of their own, and at most
  ``max_waiting`` wait for one; beyond that a login is refused at once rather than queued.

Refusals say when to retry. Bucket tables are bounded (least recently used entries go).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
MAX_TRACKED_KEYS = 10_000


class LoginThrottledError(Exception):
    def __init__(self, reason: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"{reason}; retry in {max(1, round(retry_after))} s")


@dataclass(frozen=True, slots=True)
class Rate:
    """``burst`` attempts at once, then one every ``1 / per_second`` seconds."""

    burst: int
    per_second: float


class TokenBuckets:
    """One token bucket per key, in a bounded table."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def wait_time(self, key: str) -> float:
        """0 when ``key`` has a token to spend, else seconds until it will."""
        tokens = self._tokens(key)
        return 0.0 if tokens >= 1 else (1 - tokens) / self._rate.per_second

    def spend(self, key: str) -> None:
        self._buckets[key] = (self._tokens(key) - 1, self._clock())
        self._buckets.move_to_end(key)
        while len(self._buckets) > MAX_TRACKED_KEYS:
            self._buckets.popitem(last=False)

    def _tokens(self, key: str) -> float:
        tokens, at = self._buckets.get(key, (float(self._rate.burst), self._clock()))
        return min(float(self._rate.burst), tokens + (self._clock() - at) * self._rate.per_second)


class LoginThrottle:
    def __init__(
        self,
        *,
        per_peer: Rate = Rate(burst=10, per_second=1.0),
        failures_per_client: Rate = Rate(burst=5, per_second=0.2),
        max_concurrent: int = 2,
        max_waiting: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._peers = TokenBuckets(per_peer, clock)
        self._failures = TokenBuckets(failures_per_client, clock)
        self._slots = asyncio.Semaphore(max_concurrent)
        self._max_waiting = max_waiting
        self._waiting = 0
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="login-check")

    def admit(self, client_id: str, peer: str) -> None:
        """Spends the peer's token, or raises ``LoginThrottledError``."""
        for buckets, key, reason in (
            (self._peers, peer, "too many login attempts from your address"),
            (self._failures, client_id, "too many failed logins for this client"),
        ):
            wait = buckets.wait_time(key)
            if wait > 0:
                raise LoginThrottledError(reason, wait)
        self._peers.spend(peer)

    def failed(self, client_id: str) -> None:
        self._failures.spend(client_id)

    async def run(self, check: Callable[[], T]) -> T:
        """Runs the blocking ``check`` in the login pool, waiting (bounded) for a slot.

        The slot is held until the check itself finishes, even when the caller goes away
        meanwhile: cancelled logins cannot pile up more checks than ``max_concurrent``.
        """
        if self._slots.locked() and self._waiting >= self._max_waiting:
            raise LoginThrottledError("the server is busy checking other logins", 1.0)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            running = asyncio.get_running_loop().run_in_executor(self._pool, check)
        except BaseException:
            self._slots.release()
            raise
        running.add_done_callback(lambda _: self._slots.release())
        return await asyncio.shield(running)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
