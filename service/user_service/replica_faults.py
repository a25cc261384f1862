"""What the whole-replica fault flags do (``user_service.faults``), applied on the event loop
whenever the flags change:

* feed stall: the outbox relay paused, or resumed;
* not ready: health NOT_SERVING, or SERVING again (a draining server's NOT_SERVING is final: the
  health servicer ignores changes once its shutdown began);
* memory leak: memory kept and never used, growing at the variant's rate up to its bound, all
  of it let go when the flag is off;
* CPU hog: the event loop spinning the variant's share of every 100 ms, as a CPU-heavy handler
  would — every call on this replica waits behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from grpc_health.v1 import health, health_pb2

from user_service.api.methods import USER_SERVICE
from user_service.domain.relay import OutboxRelay
from user_service.faults import ActiveFaults, Fault, HogFault, LeakFault

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HOG_PERIOD_SECONDS = 0.1
LEAK_STEP_SECONDS = 1.0


class ReplicaFaults:
    def __init__(self, relay: OutboxRelay, health_servicer: health.aio.HealthServicer) -> None:
        self._loop = asyncio.get_running_loop()
        self._relay = relay
        self._health = health_servicer
        self._pending: set[asyncio.Task[None]] = set()
        self._leak: _Effect[LeakFault] = _Effect(self._grow)
        self._hog: _Effect[HogFault] = _Effect(self._spin)
        self._kept: list[bytes] = []

    @property
    def kept_bytes(self) -> int:
        return sum(len(chunk) for chunk in self._kept)

    def on_change(self, faults: ActiveFaults) -> None:
        """For ``FaultFlags.subscribe``: called on the provider's thread."""
        with contextlib.suppress(RuntimeError):  # the loop closed: the server is gone
            self._loop.call_soon_threadsafe(self._apply, faults)

    async def close(self) -> None:
        await self._leak.stop()
        await self._hog.stop()
        self._kept.clear()

    def _apply(self, faults: ActiveFaults) -> None:
        if faults.feed_stall is not None:
            self._relay.pause()
        else:
            self._relay.resume()
        status = NOT_SERVING if faults.not_ready is not None else SERVING
        for service in ("", USER_SERVICE.full_name):
            self._spawn(self._health.set(service, status))
        self._leak.set(faults.memory_leak)
        self._hog.set(faults.cpu_hog)
        if faults.memory_leak is None:
            self._kept.clear()  # chunks of a MiB are mapped apart: freeing them returns the memory

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _grow(self, leak: LeakFault) -> None:
        while True:
            room = leak.max_bytes - self.kept_bytes
            if room > 0:
                # Written bytes, so that the pages are resident (a bytearray's zeroed pages
                # need not be), in chunks of at most a MiB.
                step = min(room, int(leak.bytes_per_second * LEAK_STEP_SECONDS))
                self._kept.extend(b"\x01" * min(step - done, 1 << 20) for done in range(0, step, 1 << 20))
            await asyncio.sleep(LEAK_STEP_SECONDS)

    async def _spin(self, hog: HogFault) -> None:
        busy = HOG_PERIOD_SECONDS * hog.busy_ratio
        while True:
            until = time.perf_counter() + busy
            while time.perf_counter() < until:  # the hog itself: holds the loop and the core
                continue
            await asyncio.sleep(HOG_PERIOD_SECONDS - busy)


F = TypeVar("F", bound=Fault)


class _Effect(Generic[F]):
    """One background effect: running for the fault in effect, restarted when it changes,
    stopped when it is off (a cancelled task ends at its next await: it does nothing more)."""

    def __init__(self, run: Callable[[F], Coroutine[Any, Any, None]]) -> None:
        self._run = run
        self._fault: F | None = None
        self._task: asyncio.Task[None] | None = None

    def set(self, fault: F | None) -> None:
        if fault == self._fault:
            return
        self._fault = fault
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if fault is not None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(fault), name=f"fault {fault.flag.key}"
            )

    async def stop(self) -> None:
        task = self._task
        self.set(None)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
