"""The load generator's log records over OTLP, beside its spans and metrics: Locust's own lines
(users spawned, a worker missing, the run's end) reach the log store under the generator's
``service.name`` (``user-service-loadgen``), so a run's story sits beside the service's.

The SDK's batch processor exports on a native thread (the generator does not patch threads);
what the handler does in the calling greenlet is translate the record and append it to a
bounded queue. ``OTEL_LOGS_EXPORTER=none`` or ``OTEL_SDK_DISABLED=true`` exports nothing.
"""

from __future__ import annotations

import atexit
import logging

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource

from loadtest.tracing import SERVICE_NAME, SYNTHETIC
from user_service.telemetry.log_export import OtlpLogHandler, build_logger_provider, export_enabled
from user_service.telemetry.shutdown import wait_at_most
from user_service.telemetry.tracing import build_resource

# Locust's own loggers do not propagate to the root (locust/log.py); its periodic statistics
# tables (locust.stats_logger) are left out: the metrics carry those.
LOGGERS = ("", "locust")
FLUSH_TIMEOUT_SECONDS = 2.0


def attach() -> None:
    """Adds the OTLP handler to the root logger and Locust's: call after Locust has set up its
    logging (the ``init`` event)."""
    if not export_enabled():
        return
    resource = build_resource(SERVICE_NAME).merge(Resource(SYNTHETIC))
    # With OTEL_SDK_DISABLED=true its loggers are no-ops, which the handler skips.
    provider = build_logger_provider(resource, NoOpMeterProvider())
    atexit.register(_shut_down, provider)
    handler = OtlpLogHandler(provider)
    for name in LOGGERS:
        logging.getLogger(name).addHandler(handler)


def _shut_down(provider: LoggerProvider) -> None:
    """Exports the run's last lines, waiting at most ``FLUSH_TIMEOUT_SECONDS``: with the
    Collector down, the exporter would otherwise hold the exit for its whole retry budget (10 s),
    as ``Telemetry.shutdown`` bounds the service's."""
    wait_at_most(FLUSH_TIMEOUT_SECONDS, provider.shutdown, name="logs-shutdown")
