"""Prometheus metrics: gRPC server metrics in go-grpc-middleware's names, and service metrics.

The gRPC series (``grpc_server_*`` with ``grpc_type``, ``grpc_service``, ``grpc_method``,
``grpc_code``) match go-grpc-middleware's ``providers/prometheus`` exactly, so community
gRPC dashboards work unchanged. Latency observations of sampled requests carry the trace
id as an exemplar (visible in the OpenMetrics exposition), linking a bucket to a trace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from user_service.api.call import RpcCall
from user_service.api.methods import RpcMethod
from user_service.telemetry.grpc_codes import GO_CODE_NAMES

# From 100 µs to 10 s: a SQLite read answers in well under a millisecond, a stream lasts seconds.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)
_GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")


def exemplar() -> dict[str, str] | None:
    """The current span's ids if it is sampled: an exemplar must point at a stored trace."""
    context = trace.get_current_span().get_span_context()
    if not context.trace_flags.sampled:
        return None
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


@dataclass(slots=True)
class _MethodSeries:
    """The labelled children of one method, resolved once instead of on every call."""

    started: Counter
    received: Counter
    sent: Counter
    handling: Histogram
    handled: dict[grpc.StatusCode, Counter]


class GrpcServerMetrics:
    """An ``RpcObserver`` that records go-grpc-middleware's server metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._started = Counter(
            "grpc_server_started",
            "Total number of RPCs started on the server.",
            _GRPC_LABELS,
            registry=registry,
        )
        self._handled = Counter(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            (*_GRPC_LABELS, "grpc_code"),
            registry=registry,
        )
        self._received = Counter(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            _GRPC_LABELS,
            registry=registry,
        )
        self._sent = Counter(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            _GRPC_LABELS,
            registry=registry,
        )
        self._handling = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled"
            " by the server.",
            _GRPC_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._series: dict[tuple[str, str, str], _MethodSeries] = {}

    def initialize(self, methods: Iterable[RpcMethod]) -> None:
        """Creates these methods' series at zero, so dashboards and rate() see them before
        the first call."""
        for method in methods:
            key = (method.type, method.service, method.name)
            self._handled_child(self._method_series(*key), key, grpc.StatusCode.OK)

    def started(self, call: RpcCall) -> None:
        self._method_series(call.type, call.service, call.method).started.inc()

    def finished(
        self, call: RpcCall, state: None, code: grpc.StatusCode, duration: float, error: BaseException | None
    ) -> None:
        key = (call.type, call.service, call.method)
        series = self._method_series(*key)
        self._handled_child(series, key, code).inc()
        if call.received:
            series.received.inc(call.received)
        if call.sent:
            series.sent.inc(call.sent)
        series.handling.observe(duration, exemplar())

    def _method_series(self, kind: str, service: str, method: str) -> _MethodSeries:
        key = (kind, service, method)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _MethodSeries(
                started=self._started.labels(*key),
                received=self._received.labels(*key),
                sent=self._sent.labels(*key),
                handling=self._handling.labels(*key),
                handled={},
            )
        return series

    def _handled_child(
        self, series: _MethodSeries, key: tuple[str, str, str], code: grpc.StatusCode
    ) -> Counter:
        child = series.handled.get(code)
        if child is None:
            child = series.handled[code] = self._handled.labels(*key, GO_CODE_NAMES[code])
        return child


class ServiceMetrics:
    """What the service does beyond RPCs: users, the change feed, the store."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.users = Gauge("user_service_users", "Users currently stored.", registry=registry)
        self.events_published = Counter(
            "user_service_events_published",
            "Change events published to live subscribers.",
            ("type",),
            registry=registry,
        )
        self.subscribers = Gauge(
            "user_service_subscribers", "Active SubscribeUsers streams.", registry=registry
        )
        self.buffered_events = Gauge(
            "user_service_subscriber_buffered_events",
            "Live events waiting in subscribers' buffers (bounded: subscribers x buffer size).",
            registry=registry,
        )
        self.published_event_id = Gauge(
            "user_service_feed_published_event_id",
            "The newest event id this process's outbox relay has published to its subscribers: it"
            " stops moving while the relay is stalled, though writes go on.",
            registry=registry,
        )
        self.subscriber_cutoffs = Counter(
            "user_service_subscriber_cutoffs",
            "Subscriptions ended by the server: too_slow (buffer overflow), shutdown.",
            ("reason",),
            registry=registry,
        )
        self.delivery_lag = Histogram(
            "user_service_event_delivery_lag_seconds",
            "Time from an event's commit to its delivery to a subscriber (replays included).",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600),
            registry=registry,
        )
        self.connection_wait = Histogram(
            "db_client_connection_wait_time_seconds",
            "Time a store statement waited for a connection (OpenTelemetry semantic convention"
            " db.client.connection.wait_time).",
            ("db_system_name",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.store_operation = Histogram(
            "db_client_operation_duration_seconds",
            "Duration of store operations (OpenTelemetry semantic convention db.client.operation.duration).",
            ("db_system_name", "db_operation_name", "db_collection_name"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
