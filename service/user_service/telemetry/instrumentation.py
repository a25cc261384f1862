"""Every plain-or-instrumented choice of the server in one place.

The composition root asks this module for each part that telemetry may wrap — the store, the
event broker, the outbox relay, the subscription observer, the RPC observers — and gets the
plain part when its signal is off. With tracing and metrics both off nothing is wrapped at all:
the benchmark's "bare" baseline.
"""

from __future__ import annotations

from user_service.api.call import RpcObserver, SubscriptionObserver
from user_service.api.methods import RpcMethod
from user_service.config import ServerSettings
from user_service.domain.events import EventBroker
from user_service.domain.ports import NO_STORE_HOOKS, StoreHooks, UserStore
from user_service.domain.relay import OutboxRelay
from user_service.faults import FaultFlags
from user_service.telemetry.database import trace_postgres_queries
from user_service.telemetry.events import FeedTelemetry, InstrumentedEventBroker, InstrumentedOutboxRelay
from user_service.telemetry.faults import FaultFlagCollector, FaultTelemetry
from user_service.telemetry.logging import AccessLog
from user_service.telemetry.metrics import GrpcServerMetrics, ServiceMetrics
from user_service.telemetry.server_spans import ServerSpans
from user_service.telemetry.setup import Telemetry
from user_service.telemetry.store import InstrumentedUserStore, StoreTelemetryHooks


class Instrumentation:
    """What ``settings`` and ``telemetry`` turn on, applied to the server's parts."""

    def __init__(self, telemetry: Telemetry, settings: ServerSettings) -> None:
        self._telemetry = telemetry
        self._settings = settings
        instrumented = telemetry.tracing or settings.metrics_enabled
        self._service_metrics = ServiceMetrics(telemetry.registry) if instrumented else None
        self._grpc_metrics = GrpcServerMetrics(telemetry.registry) if settings.metrics_enabled else None
        self._fault_telemetry: FaultTelemetry | None = None

    def store_hooks(self, flags: FaultFlags | None) -> StoreHooks:
        """What the store tells (its wait for connections) and the store faults of ``flags``."""
        metrics = self._service_metrics
        if metrics is None and flags is None:
            return NO_STORE_HOOKS
        wait = metrics.connection_wait.labels(self._settings.database_kind) if metrics is not None else None
        faults = self.fault_observer(flags) if flags is not None else None
        return StoreTelemetryHooks(wait, flags, faults)

    async def store(self, store: UserStore) -> UserStore:
        """The store, its operations timed (and traced), the user count gauge seeded from it."""
        metrics = self._service_metrics
        if metrics is None:
            return store
        tracer = self._telemetry.tracer if self._telemetry.tracing else None
        kind = self._settings.database_kind
        if tracer is not None and kind == "postgresql":
            trace_postgres_queries(self._telemetry.tracer_provider)
        instrumented = InstrumentedUserStore(store, db_system=kind, tracer=tracer, metrics=metrics)
        metrics.users.set(await instrumented.count_users())
        return instrumented

    def broker(self) -> EventBroker:
        """The live fan-out to subscribers, its publications and subscribers counted."""
        buffer_size, max_subscribers = self._settings.subscriber_buffer, self._settings.max_subscribers
        per_caller = self._settings.max_subscriptions_per_caller
        if self._service_metrics is None:
            return EventBroker(
                buffer_size=buffer_size, max_subscribers=max_subscribers, max_per_subscriber=per_caller
            )
        return InstrumentedEventBroker(
            buffer_size=buffer_size,
            max_subscribers=max_subscribers,
            max_per_subscriber=per_caller,
            metrics=self._service_metrics,
        )

    def relay(self, store: UserStore, broker: EventBroker) -> OutboxRelay:
        """The outbox relay; each announced commit a PRODUCER span in the writing call's trace."""
        poll_interval = self._settings.feed_poll_interval
        relay = (
            InstrumentedOutboxRelay(store, broker, poll_interval=poll_interval, tracer=self._telemetry.tracer)
            if self._telemetry.tracing
            else OutboxRelay(store, broker, poll_interval=poll_interval)
        )
        if self._service_metrics is not None:
            self._service_metrics.published_event_id.set_function(lambda: relay.last_published)
        return relay

    def subscription_observer(self) -> SubscriptionObserver | None:
        if self._service_metrics is None:
            return None
        return FeedTelemetry(self._telemetry.tracer, self._service_metrics)

    def fault_observer(self, flags: FaultFlags) -> FaultTelemetry:
        """Spans and counts of injected faults, and the flags in effect as a gauge (one of each
        per server, whoever asks first)."""
        if self._fault_telemetry is None:
            registry = self._telemetry.registry if self._settings.metrics_enabled else None
            if registry is not None:
                registry.register(FaultFlagCollector(flags))
            tracer = self._telemetry.tracer if self._telemetry.tracing else None
            self._fault_telemetry = FaultTelemetry(tracer, registry)
        return self._fault_telemetry

    def rpc_observers(self) -> list[RpcObserver]:
        """Outermost first. The server span first: it is current while the others run, so
        metrics find their exemplar and log lines their trace id."""
        observers: list[RpcObserver | None] = [
            ServerSpans(self._telemetry.tracer) if self._telemetry.tracing else None,
            self._grpc_metrics,
            self._access_log(),
        ]
        return [observer for observer in observers if observer is not None]

    def serve_metrics(self, methods: list[RpcMethod]) -> int | None:
        """Serves /metrics (every method's series present from the start); its port, or None."""
        if self._grpc_metrics is None:
            return None
        self._grpc_metrics.initialize(methods)
        return self._telemetry.serve_metrics(self._settings.metrics_host, self._settings.metrics_port)

    def _access_log(self) -> AccessLog | None:
        settings = self._settings
        if settings.access_log == "off":
            return None
        if settings.access_log == "all":
            return AccessLog()
        return AccessLog(only_errors_and_slower_than=settings.access_log_slow_ms / 1000)
