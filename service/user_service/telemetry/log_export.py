"""Log records over OTLP: the OpenTelemetry SDK's logs pipeline, fed by the log writer thread.

The records the service writes to stderr (``telemetry.logging``) also go, as OTLP log records,
to the Collector and on to the log store — with the trace and span ids of the call that wrote
them as the records' own trace context, and the same fields as attributes (``rpc_method``,
``grpc_code``, ``duration_ms``, …). Bounded all the way, like spans:

* the caller's side is the log writer's bounded queue (a full queue drops the line, counted);
* the writer thread translates the record and hands it to ``BatchLogRecordProcessor``, whose
  queue (``OTEL_BLRP_MAX_QUEUE_SIZE``, default 2048) drops the oldest when full — counted in
  ``otel_sdk_processor_log_processed_total{error_type="queue_full"}`` on /metrics;
* its export thread sends batches over OTLP/gRPC (``OTEL_EXPORTER_OTLP_*``, like the spans),
  so a down or slow Collector costs no request any time.

``OTEL_LOGS_EXPORTER=none`` keeps the logs on stderr only; ``OTEL_SDK_DISABLED=true`` too.
"""

from __future__ import annotations

import copy
import logging
import os

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import Resource

from user_service.telemetry.tracing import OTLP_CHANNEL_OPTIONS

# The trace context travels on the record as these attributes (``TraceContextFilter``); in the
# OTLP record it is the record's own trace context, not an attribute. ``trace_sampled`` stays an
# attribute too: the OTLP record's flags carry it, but log stores (VictoriaLogs) do not keep them.
_CONTEXT_FIELDS = ("trace_id", "span_id")


def export_enabled() -> bool:
    """Whether logs go over OTLP: not with ``OTEL_LOGS_EXPORTER=none`` (the variable's one
    value besides the default ``otlp`` that means something here)."""
    return os.environ.get("OTEL_LOGS_EXPORTER", "otlp").strip().lower() != "none"


def build_logger_provider(
    resource: Resource, meter_provider: MeterProvider, *, exporter: LogRecordExporter | None = None
) -> LoggerProvider:
    """A provider with the spans' resource (same ``service.name``, ``service.instance.id``),
    exporting in batches; the processor's and the exporter's own counters go to /metrics."""
    # shutdown_on_exit=False: Telemetry.shutdown() flushes with a bounded wait (see there).
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    exporter = exporter or OTLPLogExporter(
        meter_provider=meter_provider,
        channel_options=OTLP_CHANNEL_OPTIONS,  # type: ignore[arg-type]  # annotated as str, ints are what grpc takes
    )
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, meter_provider=meter_provider))
    return provider


class OtlpLogHandler(LoggingHandler):
    """``opentelemetry-instrumentation-logging``'s handler, fit to run on the log writer thread.

    There, the current OpenTelemetry context is the thread's, not the caller's; the caller's
    span travels on the record as ``trace_id``/``span_id``/``trace_sampled``, so it is made
    current again around the translation (a record without them — the load generator's, handled
    where it is logged — keeps the current context). Records of OpenTelemetry's own loggers are
    not exported: an exporter's complaint that it cannot reach the Collector would otherwise be
    queued for that same exporter, once per failed export.
    """

    def __init__(self, provider: LoggerProvider) -> None:
        super().__init__(logger_provider=provider)
        self.addFilter(lambda record: not record.name.startswith("opentelemetry"))

    def emit(self, record: logging.LogRecord) -> None:
        fields = vars(record)
        if "trace_id" not in fields:
            super().emit(record)
            return
        span = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id=int(fields["trace_id"], 16),
                span_id=int(fields["span_id"], 16),
                is_remote=False,
                trace_flags=trace.TraceFlags(
                    trace.TraceFlags.SAMPLED if fields.get("trace_sampled") else trace.TraceFlags.DEFAULT
                ),
            )
        )
        # The stderr sink has the record too: change a copy.
        own = copy.copy(record)
        for name in _CONTEXT_FIELDS:
            delattr(own, name)
        token = context.attach(trace.set_span_in_context(span))
        try:
            super().emit(own)
        finally:
            context.detach(token)
