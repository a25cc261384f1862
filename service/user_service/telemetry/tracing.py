"""The OpenTelemetry tracer provider and the client tracing interceptors.

Server spans come from ``server_spans.ServerSpans`` (see there why not from the upstream
aio server interceptor).

Configured only through the standard ``OTEL_*`` variables, which the SDK reads itself:
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``(``_ARG``),
``OTEL_EXPORTER_OTLP_ENDPOINT`` and friends, ``OTEL_BSP_*``, ``OTEL_SDK_DISABLED``.
This module only supplies defaults for what they leave unset.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager

import grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, suppress_instrumentation
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from user_service import __version__

DEFAULT_ENVIRONMENT = "development"

# Channel options of every OTLP/gRPC exporter here (spans, logs; the load generator's metrics
# too). gRPC backs off between connection attempts up to 120 s by default
# (grpc/doc/connection-backoff.md): after a Collector outage of half a minute, the exporters
# would wait up to a minute more before trying again, dropping every batch meanwhile (measured:
# a 27 s outage left the first trace after the restart undelivered for over 30 s). One attempt
# every 5 s at most to a Collector that is down costs nothing.
OTLP_CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (("grpc.max_reconnect_backoff_ms", 5000),)


def build_resource(service_name: str) -> Resource:
    """Our defaults, overridden by whatever OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES say."""
    defaults = Resource.create(
        {
            "service.name": service_name,
            "service.version": __version__,
            "service.instance.id": str(uuid.uuid4()),
            # The current semantic convention and the name older backends still look for.
            "deployment.environment.name": DEFAULT_ENVIRONMENT,
            "deployment.environment": DEFAULT_ENVIRONMENT,
        }
    )
    return defaults.merge(OTELResourceDetector().detect())


def build_tracer_provider(
    resource: Resource,
    meter_provider: MeterProvider,
    *,
    span_exporter: SpanExporter | None = None,
    span_processor: SpanProcessor | None = None,
    sampling_ratio: float | None = None,
) -> TracerProvider:
    """A provider exporting over OTLP/gRPC through a bounded queue.

    Sampling: ``OTEL_TRACES_SAMPLER`` when set; else, with ``sampling_ratio``, parent-based
    head sampling — a caller's decision is followed, traces started here are kept at that
    ratio (the server: 10 %, the cost of a span per call at thousands of calls per second is
    the largest single item of telemetry); else the SDK's default, every trace (the CLI).

    ``BatchSpanProcessor`` never blocks the caller: when its queue (OTEL_BSP_MAX_QUEUE_SIZE,
    default 2048) is full, spans are dropped — and counted in
    ``otel_sdk_processor_span_processed_total{error_type="queue_full"}`` — so a down or
    slow collector costs no request latency.
    """
    # shutdown_on_exit=False: Telemetry.shutdown() flushes with a bounded wait instead of an
    # atexit hook that could hold the process for the exporter's full retry budget.
    sampler = None
    if sampling_ratio is not None and "OTEL_TRACES_SAMPLER" not in os.environ:
        sampler = ParentBased(TraceIdRatioBased(sampling_ratio))
    provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=False)
    if span_processor is None:
        exporter = span_exporter or OTLPSpanExporter(
            meter_provider=meter_provider,
            channel_options=OTLP_CHANNEL_OPTIONS,  # type: ignore[arg-type]  # annotated as str, ints are what grpc takes
        )
        span_processor = BatchSpanProcessor(exporter, meter_provider=meter_provider)
    provider.add_span_processor(span_processor)
    return provider


def traced_here() -> bool:
    """Whether a child span started now could be recorded.

    Under parent-based sampling (the default) a child of an unsampled span is never
    recorded, yet creating it still costs a span's worth of work. Work on behalf of an
    unsampled request therefore starts no child spans; work outside any trace does, unless
    it runs ``untraced()`` (background loops: a trace per poll would bury the real ones).
    """
    parent = trace.get_current_span().get_span_context()
    if parent.is_valid:
        return bool(parent.trace_flags.sampled)
    return is_instrumentation_enabled()


def untraced() -> AbstractContextManager[None]:
    """Nothing started inside — tasks included, they inherit the context — is traced: neither
    this service's spans nor those of OpenTelemetry's instrumentations (asyncpg's SQL spans)."""
    return suppress_instrumentation()


def is_recording(provider: trace.TracerProvider) -> bool:
    """False when the SDK is disabled (OTEL_SDK_DISABLED=true): then nothing is traced."""
    return not isinstance(provider.get_tracer(__name__), trace.NoOpTracer)


def client_interceptors(provider: trace.TracerProvider) -> Sequence[grpc.aio.ClientInterceptor]:
    """Client spans that inject W3C trace context, so the server continues the caller's trace."""
    interceptors: Sequence[grpc.aio.ClientInterceptor] = aio_client_interceptors(tracer_provider=provider)
    return interceptors
