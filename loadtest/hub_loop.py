"""An asyncio event loop running on gevent's hub: grpc.aio for Locust's greenlets.

Locust's users are greenlets; grpc's blocking API under gevent (``init_gevent``) hands every
wait for a completion to a native thread pool and back, and its asyncio API cannot run under
Locust's usual monkey-patching (grpc.aio's poller must be a native thread, and patched
``threading`` makes greenlets). So the load generator runs Locust without patching threads
(``python -m loadtest``) and runs one asyncio loop per process *as a greenlet*: while the loop
waits for I/O, gevent runs the users; grpc.aio's poller thread wakes the loop through a file
descriptor the hub watches. Calls, their timing and their Locust events all happen on the loop,
one OS thread, no hand-off per call.

Measured in one run against the blocking API under gevent and Locust's documented pattern
(``make bench-load``, ``bench/README.md``): GetUser per core-second 5,800 (documented 4,300),
events read from a stream 15,300 per core-second (blocking API: 9,600); at 1,000 held
subscriptions the delivery p99 is 25-35 ms instead of 200 ms.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.socket

T = TypeVar("T")


class HubLoop:
    """One per process, started lazily by its first user (after Locust's fork of ``--processes``)."""

    _instance: HubLoop | None = None

    def __init__(self) -> None:
        self.loop = asyncio.SelectorEventLoop(HubSelector())
        self._greenlet = gevent.spawn(self.loop.run_forever)

    @classmethod
    def of_this_process(cls) -> HubLoop:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def start(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Runs ``coroutine`` on the loop; callable from any greenlet of this thread."""
        task = self.loop.create_task(coroutine)
        self.loop.call_soon_threadsafe(_wake_up)  # out of its wait for I/O
        return task

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Runs ``coroutine`` on the loop and waits for it in this greenlet (cancelled with it)."""
        task = self.start(coroutine)
        try:
            _finished(task).get()
        except BaseException:  # the greenlet was killed (Locust stopping the user)
            task.cancel()
            raise
        return task.result()

    def wait(self, task: asyncio.Task[Any], timeout: float) -> None:
        """Waits (in this greenlet) up to ``timeout`` seconds for ``task`` to finish."""
        _finished(task).wait(timeout)


def _finished(task: asyncio.Task[Any]) -> gevent.event.AsyncResult[asyncio.Task[Any]]:
    """Set when ``task`` is done: what a greenlet waits on."""
    done: gevent.event.AsyncResult[asyncio.Task[Any]] = gevent.event.AsyncResult()
    task.add_done_callback(done.set)
    return done


def _wake_up() -> None:
    """Scheduled from outside the loop only so that the loop's selector returns."""


class HubSelector(selectors.EpollSelector):
    """asyncio's own epoll selector, waiting through gevent's hub: while the loop has nothing to
    do, gevent waits for its epoll descriptor to become readable and runs the users meanwhile;
    a busy loop lets the users run at least every half millisecond. (gevent's own selector for
    asyncio makes a round trip through the hub on every round of the loop: in one A/B run 11,100
    events read per core-second and 4,200 GetUser calls; this one 15,300 and 5,800.)"""

    _yielded = 0.0  # when the loop last let the users run

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            now = time.perf_counter()
            if now - self._yielded > 0.0005:
                gevent.sleep(0)  # a busy loop must not starve the users' greenlets
                self._yielded = now
            return ready
        try:
            gevent.socket.wait_read(self.fileno(), timeout)
        except TimeoutError:
            return []
        return super().select(0)
