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
  fails with that status code; with ``"user_ids": [42]``, only calls naming those users (the
  OpenTelemetry Demo's one-product failure: targeting on the request, since flags are evaluated
  per replica, not per call — a flagd rule on a per-call context would cost ~20 µs a call);
* ``userServiceLatency``: ``{"methods": [...], "ratio": 0.05, "delay_ms": 800}`` — that share of
  calls waits that long before it is handled;
* ``userServiceFeedStall``: ``{"paused": true}`` — the outbox relay stops publishing (writes go on,
  the events wait in the outbox; live subscribers see nothing until the flag is off, then all of it
  in order);
* ``userServiceNotReady``: ``{"serving": false}`` — the replica reports NOT_SERVING on health, as a
  draining one does: health-checked clients move their calls to the other replicas;
* ``userServiceSlowDatabase``: ``{"ratio": 1.0, "delay_ms": 150}`` — that share of store statements
  takes that much longer inside the database (PostgreSQL: ``pg_sleep`` on the statement's
  connection; SQLite: on the thread that holds its connection), so the store span is the slow one;
* ``userServicePoolStarvation``: ``{"connections": 1}`` — at most that many statements hold a
  connection at once (HotROD's pool of one): the others queue, and say so in the wait metric;
* ``userServiceMemoryLeak``: ``{"mib_per_minute": 24, "max_mib": 24}`` — the replica keeps memory
  it never uses, at that rate up to that bound, and lets it all go when the flag is off;
* ``userServiceCpuHog``: ``{"busy_ratio": 0.9}`` — the replica's event loop spins that share of
  the time, as a CPU-heavy handler would: every call waits for it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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
SLOW_DATABASE_FLAG = "userServiceSlowDatabase"
POOL_STARVATION_FLAG = "userServicePoolStarvation"
MEMORY_LEAK_FLAG = "userServiceMemoryLeak"
CPU_HOG_FLAG = "userServiceCpuHog"
FLAGS = (
    ERRORS_FLAG,
    LATENCY_FLAG,
    FEED_STALL_FLAG,
    NOT_READY_FLAG,
    SLOW_DATABASE_FLAG,
    POOL_STARVATION_FLAG,
    MEMORY_LEAK_FLAG,
    CPU_HOG_FLAG,
)
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
    user_ids: frozenset[int] = frozenset()  # empty: every call; else calls naming one of these users

    def hits(self, method: str, request: object = None) -> bool:
        """Whether this call of ``method`` is one the fault strikes (a fresh draw per call)."""
        if self.methods and method not in self.methods:
            return False
        if self.user_ids and _user_id(request) not in self.user_ids:
            return False
        return self.strikes()

    def strikes(self) -> bool:
        """Whether this one (call, statement) is struck: a fresh draw each time."""
        return random.random() < self.ratio


def _user_id(request: object) -> int | None:
    """The user a unary request names (GetUser, DeleteUser: ``id``; UpdateUser: ``user.id``)."""
    found = getattr(request, "id", None)
    if found is None:
        found = getattr(getattr(request, "user", None), "id", None)
    return found if isinstance(found, int) else None


@dataclass(frozen=True, slots=True)
class ErrorFault(Fault):
    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE


@dataclass(frozen=True, slots=True)
class LatencyFault(Fault):
    delay_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class PoolFault(Fault):
    connections: int = 1


@dataclass(frozen=True, slots=True)
class LeakFault(Fault):
    bytes_per_second: float = 0.0
    max_bytes: int = 0


@dataclass(frozen=True, slots=True)
class HogFault(Fault):
    busy_ratio: float = 0.0


@dataclass(frozen=True, slots=True)
class ActiveFaults:
    errors: ErrorFault | None = None
    latency: LatencyFault | None = None
    feed_stall: Fault | None = None
    not_ready: Fault | None = None
    slow_database: LatencyFault | None = None
    pool_starvation: PoolFault | None = None
    memory_leak: LeakFault | None = None
    cpu_hog: HogFault | None = None
    flags: tuple[FlagState, ...] = field(default=())  # every flag as evaluated, off ones included


NO_FAULTS = ActiveFaults()
_CODES = {code.name: code for code in grpc.StatusCode}
_ERROR_CODES = ("UNAVAILABLE", "INTERNAL", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED", "UNKNOWN")


Evaluated = dict[str, tuple[FlagState, Mapping[str, Any]]]  # flag key -> (its state, its value)


class FlagFile:
    """A flag file in flagd's format, read through OpenFeature's flagd provider in its in-process
    file mode, and evaluated — ``keys`` for ``context`` — now and whenever the file changes
    (``on_change`` is called on the provider's thread). Each instance is an OpenFeature domain of
    its own: OpenFeature's API is process-wide, and tests run several servers in one process."""

    def __init__(
        self,
        path: Path,
        keys: tuple[str, ...],
        context: EvaluationContext,
        on_change: Callable[[Evaluated], None],
        owner: str,
    ) -> None:
        self._keys = keys
        self._context = context
        self._on_change = on_change
        domain = f"{owner}/{id(self)}"
        self._provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path))
        api.set_provider(self._provider, domain)
        self._client = api.get_client(domain)
        for event in (ProviderEvent.PROVIDER_READY, ProviderEvent.PROVIDER_CONFIGURATION_CHANGED):
            self._client.add_handler(event, self._changed)
        self._changed()

    def close(self) -> None:
        self._provider.shutdown()

    def _changed(self, _details: EventDetails | None = None) -> None:
        self._on_change({key: self._evaluate(key) for key in self._keys})

    def _evaluate(self, key: str) -> tuple[FlagState, Mapping[str, Any]]:
        details = self._client.get_object_details(key, {}, self._context)
        value = details.value if isinstance(details.value, Mapping) else {}
        if details.error_code is not None:
            log.warning("flag %s not evaluated (%s): off", key, details.error_code)
            value = {}
        return FlagState(key, details.variant or "off"), value


class FaultFlags:
    """The service's fault flags, watched; ``current`` is the snapshot of what is in effect for
    this replica (flagd targeting on the ``replica`` attribute can aim a fault at one)."""

    def __init__(self, path: Path, replica: str) -> None:
        self.current = NO_FAULTS
        self.replica = replica
        self._listeners: list[Callable[[ActiveFaults], None]] = []
        context = EvaluationContext(targeting_key=replica, attributes={"replica": replica})
        self._file = FlagFile(path, FLAGS, context, self._refresh, f"user-service/{replica}")

    def close(self) -> None:
        self._listeners.clear()
        self._file.close()

    def subscribe(self, listener: Callable[[ActiveFaults], None]) -> None:
        """Calls ``listener`` with the snapshot now and after every change — on the provider's
        thread: a listener touching the event loop hands over with ``call_soon_threadsafe``."""
        self._listeners.append(listener)
        listener(self.current)

    def _refresh(self, evaluated: Evaluated) -> None:
        """Swaps the snapshot in one assignment (the provider calls this on its own thread; calls
        read ``current`` on theirs)."""
        found = {key: fault_of(*evaluated[key]) for key in FLAGS}
        snapshot = ActiveFaults(
            errors=_of_type(found[ERRORS_FLAG], ErrorFault),
            latency=_of_type(found[LATENCY_FLAG], LatencyFault),
            feed_stall=found[FEED_STALL_FLAG],
            not_ready=found[NOT_READY_FLAG],
            slow_database=_of_type(found[SLOW_DATABASE_FLAG], LatencyFault),
            pool_starvation=_of_type(found[POOL_STARVATION_FLAG], PoolFault),
            memory_leak=_of_type(found[MEMORY_LEAK_FLAG], LeakFault),
            cpu_hog=_of_type(found[CPU_HOG_FLAG], HogFault),
            flags=tuple(state for state, _ in evaluated.values()),
        )
        if snapshot == self.current:
            return
        log.warning("fault flags now: %s", ", ".join(f"{s.key}={s.variant}" for s in snapshot.flags))
        self.current = snapshot
        for listener in self._listeners:
            listener(snapshot)


def fault_of(flag: FlagState, value: Mapping[str, Any]) -> Fault | None:
    """What a flag's variant value asks for; None when it is off (an empty value) or invalid."""
    if not value:
        return None
    parse = _PARSERS.get(flag.key)
    if parse is None:
        return None
    try:
        return parse(flag, value)
    except (TypeError, ValueError) as error:
        log.warning("flag %s variant %s: %s: off", flag.key, flag.variant, error)
        return None


F = TypeVar("F", bound=Fault)


def _of_type(fault: Fault | None, kind: type[F]) -> F | None:
    return fault if isinstance(fault, kind) else None


def _methods(value: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(str(method) for method in value.get("methods", ()))


def _user_ids(value: Mapping[str, Any]) -> frozenset[int]:
    return frozenset(int(user_id) for user_id in value.get("user_ids", ()))


def _ratio(value: Mapping[str, Any]) -> float:
    return min(1.0, max(0.0, float(value.get("ratio", 1.0))))


def _within(value: Mapping[str, Any], key: str, low: float, high: float, default: float = 0.0) -> float:
    """``value[key]`` as a number in (low, high]; ValueError naming it otherwise."""
    number = float(value.get(key, default))
    if not low < number <= high:
        raise ValueError(f"{key} {number:g} is not in ({low:g}, {high:g}]")
    return number


def _error_fault(flag: FlagState, value: Mapping[str, Any]) -> ErrorFault:
    code = str(value.get("code", "UNAVAILABLE"))
    if code not in _ERROR_CODES:
        raise ValueError(f"code {code} is not one of {', '.join(_ERROR_CODES)}")
    return ErrorFault(flag, _methods(value), _ratio(value), _user_ids(value), code=_CODES[code])


def _latency_fault(flag: FlagState, value: Mapping[str, Any]) -> LatencyFault:
    delay = _within(value, "delay_ms", 0, 60_000) / 1000
    return LatencyFault(flag, _methods(value), _ratio(value), _user_ids(value), delay_seconds=delay)


def _whole_replica(flag: FlagState, _value: Mapping[str, Any]) -> Fault:
    return Fault(flag, frozenset(), 1.0)  # the whole replica, while on


def _pool_fault(flag: FlagState, value: Mapping[str, Any]) -> PoolFault:
    return PoolFault(
        flag, frozenset(), 1.0, connections=int(_within(value, "connections", 0, 1000, default=1))
    )


def _leak_fault(flag: FlagState, value: Mapping[str, Any]) -> LeakFault:
    # Bounded, so that a forgotten flag cannot take the host down: the default variant's 24 MiB
    # fits under compose's 128M limit above the 96 MiB peak measured under load (bench/memory.py).
    per_minute = _within(value, "mib_per_minute", 0, 1024) * MIB
    most = int(_within(value, "max_mib", 0, 1024) * MIB)
    return LeakFault(flag, frozenset(), 1.0, bytes_per_second=per_minute / 60, max_bytes=most)


def _hog_fault(flag: FlagState, value: Mapping[str, Any]) -> HogFault:
    return HogFault(flag, frozenset(), 1.0, busy_ratio=_within(value, "busy_ratio", 0, 0.99))


MIB = 1 << 20
_PARSERS: dict[str, Callable[[FlagState, Mapping[str, Any]], Fault]] = {
    ERRORS_FLAG: _error_fault,
    LATENCY_FLAG: _latency_fault,
    FEED_STALL_FLAG: _whole_replica,
    NOT_READY_FLAG: _whole_replica,
    SLOW_DATABASE_FLAG: _latency_fault,
    POOL_STARVATION_FLAG: _pool_fault,
    MEMORY_LEAK_FLAG: _leak_fault,
    CPU_HOG_FLAG: _hog_fault,
}
