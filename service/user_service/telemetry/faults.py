"""Telemetry of faults on purpose: each injected fault is a span named after its flag (with
OpenTelemetry's ``feature_flag.*`` attributes, so a trace names its cause) and a count; which
variant of each flag is in effect is a gauge per replica — what dashboards draw as annotations
("userServiceLatency on at 12:03")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from user_service.faults import PROVIDER_NAME, FaultFlags, FlagState


def flag_attributes(flag: FlagState) -> dict[str, str]:
    return {
        "feature_flag.key": flag.key,
        "feature_flag.result.variant": flag.variant,
        "feature_flag.provider.name": PROVIDER_NAME,
    }


class FaultTelemetry:
    """A ``FaultObserver``: a span around each fault's effect, an event on the call's span, a count;
    for faults inside a span's own work, the flag's attributes on that span (``marked``)."""

    def __init__(self, tracer: trace.Tracer | None, registry: CollectorRegistry | None) -> None:
        self._tracer = tracer
        self._injected = (
            Counter(
                "user_service_faults_injected",
                "Calls struck by a fault flag, by flag, variant and effect (latency, error, event held).",
                ("flag", "variant", "effect"),
                registry=registry,
            )
            if registry is not None
            else None
        )

    @contextmanager
    def injected(self, flag: FlagState, effect: str) -> Iterator[None]:
        if self._injected is not None:
            self._injected.labels(flag.key, flag.variant, effect).inc()
        attributes = {**flag_attributes(flag), "user_service.fault.effect": effect}
        trace.get_current_span().add_event("feature_flag.evaluation", attributes)
        if self._tracer is None:
            yield
            return
        with self._tracer.start_as_current_span(f"fault {flag.key} {effect}", attributes=attributes):
            yield

    def marked(self, flag: FlagState, effect: str) -> None:
        """A fault struck inside the current span's work (a store statement): the span itself
        carries the flag's attributes, so the slow or waiting span names its cause."""
        if self._injected is not None:
            self._injected.labels(flag.key, flag.variant, effect).inc()
        attributes = {**flag_attributes(flag), "user_service.fault.effect": effect}
        span = trace.get_current_span()
        span.set_attributes(attributes)
        span.add_event("feature_flag.evaluation", attributes)

    def elapsed(self, flag: FlagState, effect: str, seconds: float) -> None:
        """A fault's effect that just lasted ``seconds`` (a wait measured after the fact): a
        span over that interval, as ``injected`` would have made around it, and a count."""
        if self._injected is not None:
            self._injected.labels(flag.key, flag.variant, effect).inc()
        if self._tracer is None:
            return
        attributes = {**flag_attributes(flag), "user_service.fault.effect": effect}
        ended = time.time_ns()
        self._tracer.start_span(
            f"fault {flag.key} {effect}", start_time=ended - int(seconds * 1e9), attributes=attributes
        ).end(end_time=ended)


class FaultFlagCollector(Collector):
    """``user_service_fault_flag{flag, variant, replica} 1`` for the variant of each flag in effect
    here; ``replica`` is the name fault targeting aims at (``make fault REPLICA=``), so that a tool
    can find which ``instance`` it is from Prometheus alone."""

    def __init__(self, flags: FaultFlags) -> None:
        self._flags = flags

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "user_service_fault_flag",
            "The variant of each fault flag in effect on this replica (1); `off` when none is.",
            labels=("flag", "variant", "replica"),
        )
        for flag in self._flags.current.flags:
            family.add_metric((flag.key, flag.variant, self._flags.replica), 1)
        yield family
