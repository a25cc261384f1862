"""How often a CRUD user calls: a fixed rate per user, each user at a phase of its own.

Locust's ``constant_throughput`` (``constant_pacing``) anchors each user's schedule to the moment
the user object was made; Locust makes a spawn batch's users at once, so they all call at the
same instant of every period. Measured (``python -m bench.load_fidelity``: GetUser at 500/s from
50 users, generator and service each pinned to a core): 76 % of calls started within 0.2 ms of
another, all in the same ~10 ms of each 100 ms, and Locust reported p50 6-11 ms / p99 18-37 ms
for calls the server handled in 0.1 / 0.5 ms — the generator queueing its own burst, not the
service's latency.

``paced(rate)`` gives each user a phase of its own within the period and keeps it: the n-th call
after the first is due at ``phase + n / rate``. Phases follow the golden-ratio sequence, as even
as a sequence can be for any number of users: random phases clump (p99 4 ms in the same run,
3 ms with these; ghz ``--rps``: 1.5-3.2 ms). A user that falls behind (a call slower than its
period) skips the slots it missed instead of catching up in a burst, like ``constant_throughput``.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable
from typing import Any

GOLDEN_RATIO_CONJUGATE = (5**0.5 - 1) / 2


class Paced:
    """Each user's next due time; ``paced`` turns it into a Locust ``wait_time``."""

    def __init__(
        self,
        calls_per_second: float,
        clock: Callable[[], float] = time.perf_counter,
        phase: Callable[[float], float] | None = None,
    ) -> None:
        if calls_per_second <= 0:
            raise ValueError(f"calls per second must be positive, got {calls_per_second}")
        self.period = 1.0 / calls_per_second
        self._clock, self._phase = clock, phase or self._spread
        self._users = 0
        self._due: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def _spread(self, period: float) -> float:
        """The n-th user's phase: n times the golden ratio, modulo 1, of the period — for any
        number of users, phases as evenly spread as a sequence can be (random ones clump)."""
        self._users += 1
        return (self._users * GOLDEN_RATIO_CONJUGATE) % 1.0 * period

    def wait(self, user: Any) -> float:
        """Seconds until ``user``'s next call is due (Locust asks after each task)."""
        now = self._clock()
        due = self._due.get(user)
        if due is None:
            due = now + self._phase(self.period)
        else:
            due += self.period
            if due < now:  # behind: the next slot of its own phase, not a burst to catch up
                due += math.ceil((now - due) / self.period) * self.period
        self._due[user] = due
        return due - now


def paced(calls_per_second: float) -> Callable[[Any], float]:
    """``wait_time = paced(rate)`` on a ``User`` class (a function, so Locust binds it to the user)."""
    pacing = Paced(calls_per_second)

    def wait_time(user: Any) -> float:
        return pacing.wait(user)

    return wait_time
