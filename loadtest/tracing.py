"""Traces that start at the load generator and continue in the service.

Each call gets a CLIENT span from ``opentelemetry-instrumentation-grpc``'s interceptor,
whose W3C context the server continues. The resource says what this traffic is:
``service.name=user-service-loadgen`` and ``user_agent.synthetic.type=test`` (the semantic
conventions' marker for synthetic traffic), so traces and dashboards can tell it from real
users. Sampling is the SDK's own (``OTEL_TRACES_SAMPLER``/``_ARG``; ``make load`` samples
1% by default) so tracing never caps the generator; ``OTEL_SDK_DISABLED=true`` installs
no interceptor at all.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import client_interceptor, grpcext
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from user_service.telemetry.tracing import build_resource, is_recording

SERVICE_NAME = "user-service-loadgen"
SYNTHETIC = {"user_agent.synthetic.type": "test"}


@dataclass(frozen=True)
class LoadTracing:
    provider: TracerProvider | None

    @classmethod
    def from_environment(cls) -> LoadTracing:
        resource = build_resource(SERVICE_NAME).merge(Resource(SYNTHETIC))
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        if not is_recording(provider):
            return cls(None)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        atexit.register(provider.shutdown)  # flush what the run traced
        return cls(provider)

    def instrument(self, channel: grpc.Channel) -> grpc.Channel:
        if self.provider is None:
            return channel
        # The instrumentation's interceptor speaks its own extension API, not grpc's.
        intercepted: grpc.Channel = grpcext.intercept_channel(
            channel, client_interceptor(tracer_provider=self.provider)
        )
        return intercepted
