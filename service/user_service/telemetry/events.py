"""Telemetry of the change feed: publication spans and counts, delivery spans and lag, cut-offs."""

from __future__ import annotations

from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from user_service.domain.errors import (
    DomainError,
    FeedClosedError,
    SubscriberTooSlowError,
)
from user_service.domain.events import EventBroker
from user_service.domain.models import EventType, UserEvent
from user_service.domain.ports import UserStore
from user_service.domain.relay import OutboxRelay
from user_service.telemetry.metrics import ServiceMetrics
from user_service.telemetry.tracing import traced_here

# Delivery spans per stream are capped: a subscription can live for days, a trace should not.
MAX_DELIVERY_SPANS_PER_STREAM = 100
_DESTINATION = "user_events"


def _event_attributes(event: UserEvent, operation: str) -> dict[str, str | int]:
    return {
        "messaging.system": "user_service",
        "messaging.destination.name": _DESTINATION,
        "messaging.operation.name": operation,
        "messaging.message.id": str(event.event_id),
        "user_service.event.type": event.type.value,
    }


class InstrumentedEventBroker(EventBroker):
    """An ``EventBroker`` whose fan-out is counted (publications, users, subscribers); it runs
    outside any request, so it is not traced."""

    def __init__(
        self,
        *,
        buffer_size: int,
        max_subscribers: int,
        max_per_subscriber: int | None = None,
        metrics: ServiceMetrics,
    ) -> None:
        super().__init__(
            buffer_size=buffer_size, max_subscribers=max_subscribers, max_per_subscriber=max_per_subscriber
        )
        self._published = {t: metrics.events_published.labels(t.value) for t in EventType}
        self._users = metrics.users
        metrics.subscribers.set_function(lambda: self.subscriber_count)
        metrics.buffered_events.set_function(lambda: self.buffered_events)

    def publish(self, event: UserEvent) -> None:
        super().publish(event)
        self._published[event.type].inc()
        if event.type is EventType.CREATED:
            self._users.inc()
        elif event.type is EventType.DELETED:
            self._users.dec()


class InstrumentedOutboxRelay(OutboxRelay):
    """An ``OutboxRelay`` whose announcements are PRODUCER spans in the writing call's trace:
    the moment a change entered the outbox, for every process's subscribers. (The relay's own
    fan-out runs outside any request: it is counted by the broker, not traced.)"""

    def __init__(
        self, store: UserStore, broker: EventBroker, *, poll_interval: float, tracer: trace.Tracer
    ) -> None:
        super().__init__(store, broker, poll_interval=poll_interval)
        self._tracer = tracer

    def committed(self, event: UserEvent) -> None:
        if traced_here():
            attributes = {
                **_event_attributes(event, "publish"),
                "user_service.subscribers": self._broker.subscriber_count,
            }
            self._tracer.start_span(
                f"{_DESTINATION} publish", kind=SpanKind.PRODUCER, attributes=attributes
            ).end()
        super().committed(event)


class FeedTelemetry:
    """A ``SubscriptionObserver``: what happens to each subscriber's stream."""

    def __init__(self, tracer: trace.Tracer, metrics: ServiceMetrics) -> None:
        self._tracer = tracer
        self._lag = metrics.delivery_lag
        self._cutoffs = {
            SubscriberTooSlowError: metrics.subscriber_cutoffs.labels("too_slow"),
            FeedClosedError: metrics.subscriber_cutoffs.labels("shutdown"),
        }

    def delivered(self, event: UserEvent, sequence: int) -> None:
        lag = max(0.0, (datetime.now(UTC) - event.event_time).total_seconds())
        self._lag.observe(lag)
        if sequence <= MAX_DELIVERY_SPANS_PER_STREAM and traced_here():
            attributes = {**_event_attributes(event, "deliver"), "user_service.event.lag_seconds": lag}
            self._tracer.start_span(
                f"{_DESTINATION} deliver", kind=SpanKind.CONSUMER, attributes=attributes
            ).end()
        elif sequence == MAX_DELIVERY_SPANS_PER_STREAM + 1:
            trace.get_current_span().add_event(
                "delivery spans capped", {"user_service.max_delivery_spans": MAX_DELIVERY_SPANS_PER_STREAM}
            )

    def ended(self, error: DomainError) -> None:
        counter = self._cutoffs.get(type(error))
        if counter is not None:
            counter.inc()
