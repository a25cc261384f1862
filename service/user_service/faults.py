"""Faults on purpose: flags that make the service misbehave in realistic ways, so that a user can
watch the stack notice (an alert, a panel, an exemplar, a trace) and follow it to the cause.

The flags live in one file in flagd's flag-definition format (``flags/demo.flagd.json``, every
flag off by default), read through OpenFeature's flagd provider in its in-process file mode: the
same file works with a flagd daemon and its tools, and an edit (written atomically) is picked up
within about a second, without a restart.

Evaluating a flag costs ~20 µs, too much for every call. So the flags are evaluated when the
file changes — for this replica (flagd targeting on the ``replica`` attribute can aim a fault at
one of them) — into an immutable ``ActiveFaults`` snapshot, and a call only reads that snapshot:
with every flag off, one attribute read. What a variant does is its value, a JSON object:

* ``userServiceErrors``: ``{"methods": ["GetUser"], "ratio": 0.1, "code": "UNAVAILABLE"}`` — that
  share of those methods' calls (every method of user.v1.UserService when ``methods`` is absent)
  fails with that status code;
* ``userServiceLatency``: ``{"methods": [...], "ratio": 0.05, "delay_ms": 800}`` — that share of
  calls waits that long before it is handled;
* ``userServiceFeedStall``: ``{"paused": true}`` — the outbox relay stops publishing (writes go on,
  the events wait in the outbox; live subscribers see nothing until the flag is off, then all of it
  in order);
* ``userServiceNotReady``: ``{"serving": false}`` — the replica reports NOT_SERVING on health, as a
  draining one does: health-checked clients move their calls to the other replicas.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent

ERRORS_FLAG = "userServiceErrors"
LATENCY_FLAG = "userServiceLatency"
FEED_STALL_FLAG = "userServiceFeedStall"
NOT_READY_FLAG = "userServiceNotReady"
FLAGS = (ERRORS_FLAG, LATENCY_FLAG, FEED_STALL_FLAG, NOT_READY_FLAG)
PROVIDER_NAME = "flagd"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FlagState:
    """A flag as this replica evaluated it: what its telemetry names (OpenTelemetry's
    ``feature_flag.*`` attributes)."""

    key: str
    variant: str


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault in effect: where it applies and, for each call there, how likely."""

    flag: FlagState
    methods: frozenset[str]  # empty: every method
    ratio: float

    def hits(self, method: str) -> bool:
        """Whether this call of ``method`` is one the fault strikes (a fresh draw per call)."""
        return (not self.methods or method in self.methods) and random.random() < self.ratio


@dataclass(frozen=True, slots=True)
class ErrorFault(Fault):
    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE


@dataclass(frozen=True, slots=True)
class LatencyFault(Fault):
    delay_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ActiveFaults:
    errors: ErrorFault | None = None
    latency: LatencyFault | None = None
    feed_stall: Fault | None = None
    not_ready: Fault | None = None
    flags: tuple[FlagState, ...] = field(default=())  # every flag as evaluated, off ones included


NO_FAULTS = ActiveFaults()
_CODES = {code.name: code for code in grpc.StatusCode}
_ERROR_CODES = ("UNAVAILABLE", "INTERNAL", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED", "UNKNOWN")


class FaultFlags:
    """The flag file, watched; ``current`` is the snapshot of what is in effect for this replica."""

    def __init__(self, path: Path, replica: str) -> None:
        self.current = NO_FAULTS
        self._listeners: list[Callable[[ActiveFaults], None]] = []
        self._context = EvaluationContext(targeting_key=replica, attributes={"replica": replica})
        self._domain = f"user-service/{replica}/{id(self)}"  # OpenFeature's API is process-wide
        self._provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path))
        api.set_provider(self._provider, self._domain)
        self._client = api.get_client(self._domain)
        for event in (ProviderEvent.PROVIDER_READY, ProviderEvent.PROVIDER_CONFIGURATION_CHANGED):
            self._client.add_handler(event, self._refresh)
        self._refresh()

    def close(self) -> None:
        self._listeners.clear()
        self._provider.shutdown()

    def subscribe(self, listener: Callable[[ActiveFaults], None]) -> None:
        """Calls ``listener`` with the snapshot now and after every change — on the provider's
        thread: a listener touching the event loop hands over with ``call_soon_threadsafe``."""
        self._listeners.append(listener)
        listener(self.current)

    def _refresh(self, _details: EventDetails | None = None) -> None:
        """Evaluates every fault flag for this replica and swaps the snapshot in one assignment
        (the provider calls this on its own thread; calls read ``current`` on theirs)."""
        evaluated = {key: self._evaluate(key) for key in FLAGS}
        found = {key: fault_of(*evaluated[key]) for key in FLAGS}
        errors, latency = found[ERRORS_FLAG], found[LATENCY_FLAG]
        snapshot = ActiveFaults(
            errors=errors if isinstance(errors, ErrorFault) else None,
            latency=latency if isinstance(latency, LatencyFault) else None,
            feed_stall=found[FEED_STALL_FLAG],
            not_ready=found[NOT_READY_FLAG],
            flags=tuple(state for state, _ in evaluated.values()),
        )
        if snapshot == self.current:
            return
        log.warning("fault flags now: %s", ", ".join(f"{s.key}={s.variant}" for s in snapshot.flags))
        self.current = snapshot
        for listener in self._listeners:
            listener(snapshot)

    def _evaluate(self, key: str) -> tuple[FlagState, Mapping[str, Any]]:
        details = self._client.get_object_details(key, {}, self._context)
        value = details.value if isinstance(details.value, Mapping) else {}
        if details.error_code is not None:
            log.warning("fault flag %s not evaluated (%s): off", key, details.error_code)
            value = {}
        return FlagState(key, details.variant or "off"), value


def fault_of(flag: FlagState, value: Mapping[str, Any]) -> Fault | None:
    """What a flag's variant value asks for; None when it is off (an empty value) or invalid."""
    if not value:
        return None
    if flag.key == ERRORS_FLAG:
        return _error_fault(flag, value)
    if flag.key == LATENCY_FLAG:
        return _latency_fault(flag, value)
    if flag.key in (FEED_STALL_FLAG, NOT_READY_FLAG):
        return Fault(flag, frozenset(), 1.0)  # the whole replica, while on
    return None


def _methods(value: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(str(method) for method in value.get("methods", ()))


def _ratio(value: Mapping[str, Any]) -> float:
    return min(1.0, max(0.0, float(value.get("ratio", 1.0))))


def _error_fault(flag: FlagState, value: Mapping[str, Any]) -> ErrorFault | None:
    code = str(value.get("code", "UNAVAILABLE"))
    if code not in _ERROR_CODES:
        log.warning(
            "flag %s variant %s: code %s is not one of %s: off", flag.key, flag.variant, code, _ERROR_CODES
        )
        return None
    return ErrorFault(flag, _methods(value), _ratio(value), _CODES[code])


def _latency_fault(flag: FlagState, value: Mapping[str, Any]) -> LatencyFault | None:
    delay_ms = float(value.get("delay_ms", 0))
    if not 0 < delay_ms <= 60_000:
        log.warning(
            "flag %s variant %s: delay_ms %s is not in (0, 60000]: off", flag.key, flag.variant, delay_ms
        )
        return None
    return LatencyFault(flag, _methods(value), _ratio(value), delay_ms / 1000)
