"""Login throttling: token buckets per peer and per client, a bounded pool for the checks."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.conftest import eventually
from user_service.auth.throttle import LoginThrottle, LoginThrottledError, Rate, TokenBuckets


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_one_per_refill_interval() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(Rate(burst=3, per_second=0.5), clock)
    for _ in range(3):
        assert buckets.wait_time("peer") == 0
        buckets.spend("peer")
    assert buckets.wait_time("peer") == pytest.approx(2.0)
    assert buckets.wait_time("another peer") == 0, "buckets are per key"
    clock.now += 2.0
    assert buckets.wait_time("peer") == 0


def test_peers_are_limited_on_every_attempt_clients_only_on_failures() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(
        per_peer=Rate(burst=5, per_second=1), failures_per_client=Rate(burst=2, per_second=0.1), clock=clock
    )
    for _ in range(5):
        throttle.admit("dev-reader", "ipv4:10.0.0.1")  # successes: the client is never held back
    with pytest.raises(LoginThrottledError, match="from your address; retry in 1 s"):
        throttle.admit("dev-reader", "ipv4:10.0.0.1")
    throttle.failed("dev-admin")
    throttle.failed("dev-admin")
    with pytest.raises(LoginThrottledError, match="failed logins for this client; retry in 10 s"):
        throttle.admit("dev-admin", "ipv4:10.0.0.2")


async def test_checks_run_a_bounded_number_at_a_time_and_excess_waiters_are_refused() -> None:
    throttle = LoginThrottle(max_concurrent=2, max_waiting=1)
    release = threading.Event()
    running: list[int] = []

    def check() -> bool:
        running.append(1)
        return release.wait(5)

    try:
        first = [asyncio.create_task(throttle.run(check)) for _ in range(3)]  # 2 run, 1 waits
        await eventually(lambda: len(running) == 2)
        with pytest.raises(LoginThrottledError, match="busy"):
            await throttle.run(check)
        assert len(running) == 2
        release.set()
        assert await asyncio.gather(*first) == [True, True, True]
    finally:
        release.set()
        throttle.close()


async def test_a_cancelled_login_keeps_its_slot_until_its_check_finishes() -> None:
    """Otherwise clients that hang up could pile up unbounded scrypt work."""
    throttle = LoginThrottle(max_concurrent=1, max_waiting=0)
    release = threading.Event()
    try:
        abandoned = asyncio.create_task(throttle.run(lambda: release.wait(5)))
        await asyncio.sleep(0.05)
        abandoned.cancel()
        with pytest.raises(LoginThrottledError):
            await throttle.run(lambda: True)
        release.set()
        await asyncio.sleep(0.05)
        assert await throttle.run(lambda: True)
    finally:
        release.set()
        throttle.close()
