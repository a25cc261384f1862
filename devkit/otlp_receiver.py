"""A minimal OTLP/gRPC receiver: keeps the spans it is sent (and accepts metrics, counting their
exports), for the demo, tests and bench.

It speaks the real protocol (opentelemetry.proto TraceService/Export), so whatever
reaches it went through the real SDK exporter. Run standalone it prints a summary:

    python -m devkit.otlp_receiver --port 4317
"""

from __future__ import annotations

import argparse
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

SPAN_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    attributes: dict[str, Any]
    status_code: int
    resource: dict[str, Any] = field(repr=False)
    duration_seconds: float = 0.0


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name", "")),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=SPAN_KINDS.get(span.kind, str(span.kind)),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            status_code=span.status.code,
                            resource=resource,
                            duration_seconds=(span.end_time_unix_nano - span.start_time_unix_nano) / 1e9,
                        )
                    )
        self._receiver.add(received)
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    """Accepts metric exports (so an exporter sending them sees success), counting them."""

    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        with self._receiver._lock:
            self._receiver.metric_exports += 1
        return metrics_service_pb2.ExportMetricsServiceResponse()


class OtlpReceiver:
    """Listens on a loopback port; ``endpoint`` is what OTEL_EXPORTER_OTLP_ENDPOINT takes."""

    def __init__(self, port: int = 0, keep_spans: bool = True) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsService(self), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        self._keep = keep_spans
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.count = 0
        self.metric_exports = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)

    def add(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self.count += len(spans)
            if self._keep:
                self._spans.extend(spans)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=4317)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with OtlpReceiver(args.port, keep_spans=False) as receiver:
        print(f"receiving OTLP traces on {receiver.endpoint}", flush=True)
        stop.wait()
    print(f"received {receiver.count} spans, {receiver.metric_exports} metric exports", flush=True)


if __name__ == "__main__":
    main()
