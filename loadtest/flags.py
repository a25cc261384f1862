"""The load generator's fault flags, in the service's flag file (``LOAD_FLAGS_FILE``; the stack
points it at ``flags/demo.flagd.json``), read through OpenFeature's flagd provider as the service
reads its own (``user_service.faults.FlagFile``):

* ``loadGeneratorSlowConsumers``: ``{"share": 1.0, "delay_ms": 100}`` — that share of the held
  subscriptions take that long over each event, as a consumer with slow processing does: when
  the feed is faster, they fall behind until the server cuts them off (its buffer and the
  connection's flow-control window full; RESOURCE_EXHAUSTED with the resume point, which they
  see once they have read what was already on its way), and they resume from their last event —
  to fall behind again while the flag is on;
* ``loadGeneratorTrafficSpike``: ``{"multiplier": 4}`` — the run's users times that many while
  the flag is on (the master, or the single process, changes the user count; back when off).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openfeature.evaluation_context import EvaluationContext

from user_service.faults import Evaluated, FlagFile, FlagState

SLOW_CONSUMERS_FLAG = "loadGeneratorSlowConsumers"
TRAFFIC_SPIKE_FLAG = "loadGeneratorTrafficSpike"
LOAD_FLAGS = (SLOW_CONSUMERS_FLAG, TRAFFIC_SPIKE_FLAG)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SlowConsumers:
    flag: FlagState
    share: float
    delay_seconds: float  # per event

    def is_slow(self) -> bool:
        """Whether this stream is one of the slow ones (a fresh draw per stream)."""
        return random.random() < self.share


@dataclass(frozen=True, slots=True)
class TrafficSpike:
    flag: FlagState
    multiplier: float


@dataclass(frozen=True, slots=True)
class LoadFaults:
    slow_consumers: SlowConsumers | None = None
    traffic_spike: TrafficSpike | None = None
    flags: tuple[FlagState, ...] = ()  # every load flag as evaluated, off ones included


def load_fault_of(flag: FlagState, value: Mapping[str, Any]) -> SlowConsumers | TrafficSpike | None:
    """What a load flag's variant value asks for; None when it is off or invalid (said so)."""
    if not value:
        return None
    try:
        if flag.key == SLOW_CONSUMERS_FLAG:
            share = float(value.get("share", 1.0))
            delay_ms = float(value["delay_ms"])
            if not (0 < share <= 1 and 0 < delay_ms <= 10_000):
                raise ValueError(f"share {share} not in (0, 1] or delay_ms {delay_ms} not in (0, 10000]")
            return SlowConsumers(flag, share, delay_ms / 1000)
        if flag.key == TRAFFIC_SPIKE_FLAG:
            multiplier = float(value["multiplier"])
            if not 1 <= multiplier <= 20:
                raise ValueError(f"multiplier {multiplier} is not in [1, 20]")
            return TrafficSpike(flag, multiplier)
    except (KeyError, TypeError, ValueError) as error:
        log.warning("flag %s variant %s: %s: off", flag.key, flag.variant, error)
    return None


NO_LOAD_FAULTS = LoadFaults()


class LoadFlags:
    """The load flags, watched; ``current`` is the snapshot in effect (swapped in one assignment).

    Open one per process, at Locust's ``init``: with ``--processes`` Locust forks its workers
    after importing the locustfile, and a watcher started before the fork does not run in them."""

    def __init__(self, path: Path) -> None:
        self.current = LoadFaults()
        context = EvaluationContext(targeting_key="load-generator", attributes={"replica": "load-generator"})
        self._file = FlagFile(path, LOAD_FLAGS, context, self._refresh, "load-generator")

    def close(self) -> None:
        self._file.close()

    def _refresh(self, evaluated: Evaluated) -> None:
        slow = load_fault_of(*evaluated[SLOW_CONSUMERS_FLAG])
        spike = load_fault_of(*evaluated[TRAFFIC_SPIKE_FLAG])
        snapshot = LoadFaults(
            slow_consumers=slow if isinstance(slow, SlowConsumers) else None,
            traffic_spike=spike if isinstance(spike, TrafficSpike) else None,
            flags=tuple(state for state, _ in evaluated.values()),
        )
        if snapshot != self.current:
            log.warning("load generator flags now: %s", snapshot)
            self.current = snapshot
