"""What the load generator drives, as metrics: every request Locust records, and its users.

Traces are sampled (1 % by default), so span-derived metrics show a sliver of the load; these
count every request. They go over OTLP (the SDK's ``OTEL_EXPORTER_OTLP_*`` settings, like the
traces) to the Collector, which serves them to Prometheus under the load generator's
``service.name`` (``job="user-service-loadgen"``):

* ``loadgen_request_duration_seconds`` — histogram per ``grpc_type``, ``request_name`` (Locust's
  name: the RPC, or a step such as "SubscribeUsers delivery") and ``error_type`` (the status
  code's name; absent on success): the client's view, to set beside the server's.
* ``loadgen_users`` — users this process runs (summed over Locust's worker processes).
* ``loadgen_fault_flag`` — per ``flag`` and ``variant``, 1 for the variant of each load
  generator fault flag in effect (``loadtest.flags``), 0 for those that were before.

Exported every 5 s (``OTEL_METRIC_EXPORT_INTERVAL``), so the load-run dashboard keeps up with a
run; ``OTEL_SDK_DISABLED=true`` or ``OTEL_METRICS_EXPORTER=none`` records nothing.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable
from typing import Any

from locust.env import Environment
from locust.runners import MasterRunner
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from loadtest.flags import LoadFlags
from loadtest.grpc_user import GrpcStatusError
from loadtest.tracing import SERVICE_NAME, SYNTHETIC
from user_service.telemetry.tracing import OTLP_CHANNEL_OPTIONS, build_resource

# Seconds; the service's own latency buckets from 1 ms up, plus the long held streams.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def attach(environment: Environment, flags: LoadFlags | None = None) -> None:
    """Records this process's requests and users, unless it is the master of worker processes
    (their requests are fired in the workers; its user count is their sum)."""
    if isinstance(environment.runner, MasterRunner) or not _enabled():
        return
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(channel_options=OTLP_CHANNEL_OPTIONS),  # type: ignore[arg-type]  # see there
        export_interval_millis=float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", 5000)),
    )
    provider = MeterProvider(
        metric_readers=[reader],
        resource=build_resource(SERVICE_NAME).merge(Resource(SYNTHETIC)),
        views=[
            View(
                instrument_name="loadgen.request.duration",
                aggregation=ExplicitBucketHistogramAggregation(BUCKETS),
            )
        ],
        shutdown_on_exit=False,
    )
    atexit.register(provider.shutdown)  # the last interval's requests are exported too
    meter = provider.get_meter("loadtest")
    duration = meter.create_histogram(
        "loadgen.request.duration", unit="s", description="Requests as the load generator measured them."
    )
    attributes: dict[tuple[str, str, str | None], dict[str, str]] = {}  # one dict per series, reused

    def on_request(
        request_type: str, name: str, response_time: float, exception: Any = None, **_: Any
    ) -> None:
        error = _error_type(exception)
        key = (request_type, name, error)
        labels = attributes.get(key)
        if labels is None:
            labels = attributes[key] = {"grpc.type": request_type, "request.name": name}
            if error is not None:
                labels["error.type"] = error
        duration.record(response_time / 1000, labels)

    def users(_: CallbackOptions) -> Iterable[Observation]:
        runner = environment.runner
        return [Observation(runner.user_count if runner is not None else 0)]

    meter.create_observable_gauge("loadgen.users", [users], unit="{user}", description="Users running.")
    if flags is not None:
        seen: set[tuple[str, str]] = set()

        def flags_in_effect(_: CallbackOptions) -> Iterable[Observation]:
            """1 for the variant in effect; 0 for every variant seen before — so that the
            Collector, which keeps a series it no longer hears about for minutes, holds a 0 for
            a fault that went off rather than its last 1."""
            now = {(f.key, f.variant) for f in flags.current.flags}
            seen.update(now)
            return [Observation(int(pair in now), {"flag": pair[0], "variant": pair[1]}) for pair in seen]

        meter.create_observable_gauge(
            "loadgen.fault_flag", [flags_in_effect], unit="{flag}", description="Load fault flags in effect."
        )
    environment.events.request.add_listener(on_request)  # type: ignore[no-untyped-call]


def _error_type(exception: object) -> str | None:
    """The status code's name; the class name for anything else (never a message: bounded)."""
    if exception is None:
        return None
    return exception.code.name if isinstance(exception, GrpcStatusError) else type(exception).__name__


def _enabled() -> bool:
    return (
        os.environ.get("OTEL_SDK_DISABLED", "").lower() != "true"
        and os.environ.get("OTEL_METRICS_EXPORTER", "otlp").lower() != "none"
    )
