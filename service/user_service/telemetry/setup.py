"""The process-wide telemetry singletons, created in one call: the OpenTelemetry providers
(traces, metrics, logs) and the Prometheus registry, plus the /metrics HTTP endpoint that
serves the registry."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer

from user_service.telemetry.log_export import OtlpLogHandler, build_logger_provider, export_enabled
from user_service.telemetry.shutdown import wait_at_most
from user_service.telemetry.tracing import build_resource, build_tracer_provider, is_recording

log = logging.getLogger(__name__)
INSTRUMENTATION_NAME = "user_service"
FLUSH_TIMEOUT_SECONDS = 3.0


# /metrics is for a few scrapers, not the world: it must not let idle or slow clients
# tie up a thread and a file descriptor each for ever.
METRICS_MAX_CONNECTIONS = 16
METRICS_IDLE_TIMEOUT_SECONDS = 5.0


class _QuietHandler(WSGIRequestHandler):
    timeout = METRICS_IDLE_TIMEOUT_SECONDS  # a connection that sends nothing is closed

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not worth a log line each."""


class _BoundedMetricsServer(ThreadingWSGIServer):
    """Serves at most ``METRICS_MAX_CONNECTIONS`` connections at once, each in its own
    thread; a connection beyond that is closed at once instead of getting a thread."""

    request_queue_size = 128  # the listen backlog: refused connections are closed, not left in SYN limbo

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(METRICS_MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A scraper that timed out or hung up is not worth a traceback on stderr."""
        log.debug("/metrics request from %s failed", client_address, exc_info=True)


@dataclass
class Telemetry:
    registry: CollectorRegistry
    meter_provider: MeterProvider
    tracer_provider: TracerProvider
    logger_provider: LoggerProvider | None  # None: logs stay on stderr (OTEL_LOGS_EXPORTER=none)
    _metrics_http: tuple[WSGIServer, threading.Thread] | None = field(default=None, init=False)

    @property
    def tracing(self) -> bool:
        return is_recording(self.tracer_provider)

    @property
    def tracer(self) -> trace.Tracer:
        return self.tracer_provider.get_tracer(INSTRUMENTATION_NAME)

    def log_sink(self) -> logging.Handler | None:
        """The handler that exports log records over OTLP, for the log writer's thread
        (``LogWriter.add_sink``); None when logs are not exported."""
        return OtlpLogHandler(self.logger_provider) if self.logger_provider is not None else None

    def serve_metrics(self, host: str, port: int) -> int:
        """Serves the registry on http://host:port/metrics in a thread; returns the bound port.

        Content negotiation: Prometheus asking for ``application/openmetrics-text`` gets
        OpenMetrics, with exemplars; anything else gets the classic text format.
        """
        server = make_server(host, port, make_wsgi_app(self.registry), _BoundedMetricsServer, _QuietHandler)
        # A short poll interval lets shutdown() return promptly (the default waits 0.5 s).
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="metrics-http", daemon=True
        )
        thread.start()
        self._metrics_http = (server, thread)
        return int(server.server_port)

    def shutdown(self, flush_timeout: float = FLUSH_TIMEOUT_SECONDS) -> None:
        """Stops /metrics and flushes buffered spans and log records, waiting at most ``flush_timeout``.

        With the collector down, the OTLP exporter keeps retrying for its whole timeout
        (OTEL_EXPORTER_OTLP_TIMEOUT, 10 s by default); a process that is stopping should
        not wait that long for spans that cannot be delivered anyway.
        """
        if self._metrics_http is not None:
            server, thread = self._metrics_http
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._metrics_http = None
        wait_at_most(flush_timeout, self._shutdown_providers, name="telemetry-shutdown")

    def _shutdown_providers(self) -> None:
        self.tracer_provider.shutdown()
        if self.logger_provider is not None:
            self.logger_provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(
    service_name: str,
    *,
    span_exporter: SpanExporter | None = None,
    span_processor: SpanProcessor | None = None,
    sampling_ratio: float | None = None,
    log_exporter: LogRecordExporter | None = None,
    export_logs: bool = True,
) -> Telemetry:
    """Spans and log records go to OTLP through batch processors. Tests replace the span
    exporter (still batched) or the whole processor (e.g. synchronous, in memory), and the log
    exporter. ``sampling_ratio``: see ``build_tracer_provider``. ``export_logs=False`` (or
    ``OTEL_LOGS_EXPORTER=none``) makes no logs pipeline."""
    # Let the SDK count its own work (spans exported, dropped for a full queue) unless the
    # operator said otherwise; those counters reach /metrics through the bridge below.
    os.environ.setdefault("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    resource = build_resource(service_name)
    meter_provider = MeterProvider(
        metric_readers=[PrometheusMetricReader(disable_target_info=True, registry=registry)],
        resource=resource,
        shutdown_on_exit=False,
    )
    tracer_provider = build_tracer_provider(
        resource,
        meter_provider,
        span_exporter=span_exporter,
        span_processor=span_processor,
        sampling_ratio=sampling_ratio,
    )
    logger_provider = None
    if export_logs and (log_exporter is not None or export_enabled()):
        logger_provider = build_logger_provider(resource, meter_provider, exporter=log_exporter)
    return Telemetry(registry, meter_provider, tracer_provider, logger_provider)
