"""Traces that start at the load generator and continue in the service.

Each call the generator times gets a CLIENT span, started and ended around the timed interval
(``loadtest.grpc_user``), whose W3C context goes out in the call's metadata and which the
server's span continues. Not ``opentelemetry-instrumentation-grpc``'s asyncio interceptors:
any grpc.aio interceptor puts each call through grpc's intercepted-call machinery, and that
cost the generator 32 % of its calls per core with nothing sampled (6,374 → 4,363 GetUser per
core-second, ``make bench-load``); these spans carry the same name and ``rpc.*`` attributes.

The resource says what this traffic is: ``service.name=user-service-loadgen`` and
``user_agent.synthetic.type=test`` (the semantic conventions' marker for synthetic traffic), so
traces and dashboards can tell it from real users. Sampling is the SDK's own
(``OTEL_TRACES_SAMPLER``/``_ARG``; ``make load`` samples 1 % by default) so tracing never caps the
generator; every call carries its ``traceparent``, sampled or not, so the service follows the
generator's decision. ``OTEL_SDK_DISABLED=true`` traces nothing. Spans are exported by the SDK's
batch processor on a native thread (the generator does not patch threads), off the loop that
times the calls.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass

import grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from user_service.api.methods import USER_SERVICE
from user_service.telemetry.tracing import OTLP_CHANNEL_OPTIONS, build_resource, is_recording

SERVICE_NAME = "user-service-loadgen"
SYNTHETIC = {"user_agent.synthetic.type": "test"}
Metadata = tuple[tuple[str, str], ...]


class CallSpans:
    """CLIENT spans of the user service's methods, named and attributed as
    ``opentelemetry-instrumentation-grpc`` names them (``/user.v1.UserService/GetUser``)."""

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("loadtest")
        self._attributes: dict[str, dict[str, str]] = {}

    def start(self, method: str, metadata: Metadata) -> tuple[trace.Span, Metadata]:
        """The span of a call of ``method``, and the call's metadata with its context added."""
        attributes = self._attributes.get(method)
        if attributes is None:
            attributes = self._attributes[method] = {
                "rpc.system": "grpc",
                "rpc.service": USER_SERVICE.full_name,
                "rpc.method": method,
            }
        span = self._tracer.start_span(
            f"/{USER_SERVICE.full_name}/{method}", kind=SpanKind.CLIENT, attributes=attributes
        )
        carrier: dict[str, str] = {}
        inject(carrier, context=trace.set_span_in_context(span))
        return span, metadata + tuple(carrier.items())

    @staticmethod
    def end(span: trace.Span, code: grpc.StatusCode) -> None:
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code != grpc.StatusCode.OK:
                span.set_status(Status(StatusCode.ERROR, code.name))
        span.end()


@dataclass(frozen=True)
class LoadTracing:
    provider: TracerProvider | None

    @classmethod
    def from_environment(cls) -> LoadTracing:
        resource = build_resource(SERVICE_NAME).merge(Resource(SYNTHETIC))
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        if not is_recording(provider):
            return cls(None)
        exporter = OTLPSpanExporter(channel_options=OTLP_CHANNEL_OPTIONS)  # type: ignore[arg-type]  # see there
        provider.add_span_processor(BatchSpanProcessor(exporter))
        atexit.register(provider.shutdown)  # flush what the run traced
        return cls(provider)

    def call_spans(self) -> CallSpans | None:
        """Spans for the generator's calls; None when tracing is off."""
        return CallSpans(self.provider) if self.provider is not None else None
