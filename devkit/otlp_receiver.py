"""A minimal OTLP/gRPC receiver: keeps the spans and log records it is sent (and accepts metrics,
counting their exports), for the demo, tests and bench.

It speaks the real protocol (opentelemetry.proto Trace/Logs/MetricsService Export), so whatever
reaches it went through the real SDK exporter. Run standalone it prints a summary:

    python -m devkit.otlp_receiver --port 4317
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
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


@dataclass(frozen=True)
class ReceivedLog:
    service: str
    trace_id: str  # "" when the record was written outside a trace
    span_id: str
    sampled: bool  # the W3C sampled bit of the record's flags
    severity_text: str
    body: Any
    attributes: dict[str, Any]
    resource: dict[str, Any] = field(repr=False)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _by_resource(groups: Iterable[Any], scopes: str, items: str) -> Iterator[tuple[dict[str, Any], Any]]:
    """Every span or record of an export request (resource -> scope -> item), each with its
    resource's attributes."""
    for group in groups:
        resource = {a.key: _value(a.value) for a in group.resource.attributes}
        for scope in getattr(group, scopes):
            for item in getattr(scope, items):
                yield resource, item


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = [
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
            for resource, span in _by_resource(request.resource_spans, "scope_spans", "spans")
        ]
        self._receiver.add(received)
        return trace_service_pb2.ExportTraceServiceResponse()


class _LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: logs_service_pb2.ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        received = [
            ReceivedLog(
                service=str(resource.get("service.name", "")),
                trace_id=record.trace_id.hex(),
                span_id=record.span_id.hex(),
                sampled=bool(record.flags & 0x01),
                severity_text=record.severity_text,
                body=_value(record.body),
                attributes={a.key: _value(a.value) for a in record.attributes},
                resource=resource,
            )
            for resource, record in _by_resource(request.resource_logs, "scope_logs", "log_records")
        ]
        self._receiver.add_logs(received)
        return logs_service_pb2.ExportLogsServiceResponse()


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

    def __init__(self, port: int = 0, keep: bool = True) -> None:
        """``keep``: hold what arrives for ``spans()``/``logs()`` (False: only count it)."""
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsService(self), self._server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsService(self), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        self._keep = keep
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._logs: list[ReceivedLog] = []
        self.count = 0
        self.log_count = 0
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

    def add_logs(self, records: list[ReceivedLog]) -> None:
        with self._lock:
            self.log_count += len(records)
            if self._keep:
                self._logs.extend(records)

    def logs(self) -> list[ReceivedLog]:
        with self._lock:
            return list(self._logs)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._logs.clear()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=4317)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with OtlpReceiver(args.port, keep=False) as receiver:
        print(f"receiving OTLP traces, logs and metrics on {receiver.endpoint}", flush=True)
        stop.wait()
    print(
        f"received {receiver.count} spans, {receiver.log_count} log records,"
        f" {receiver.metric_exports} metric exports",
        flush=True,
    )


if __name__ == "__main__":
    main()
