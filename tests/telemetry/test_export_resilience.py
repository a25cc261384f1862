"""A down or stalled trace backend never slows or fails a call: spans are dropped and counted."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tests.conftest import create_user
from user_service.config import ServerSettings
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.listening import free_port
from user_service.server import SERVICE_NAME, RunningServer, start_server
from user_service.telemetry.setup import setup_telemetry


class StalledExporter(SpanExporter):
    """A backend that accepts a connection and then never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        self.release.wait(timeout=30)
        return SpanExportResult.SUCCESS


def _dropped_spans(server: RunningServer) -> float:
    return sum(
        sample.value
        for family in server.telemetry.registry.collect()
        for sample in family.samples
        if sample.name == "otel_sdk_processor_span_processed_total"
        and sample.labels.get("error_type") == "queue_full"
    )


def _settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        port=0,
        metrics_port=0,
        database_url=f"sqlite:///{tmp_path}/users.db",
        access_log=False,
        auth_enabled=False,
    )


async def _create_many(server: RunningServer, count: int) -> None:
    """Each call has a 2 s deadline: a call that waited on export would fail it."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        for i in range(count):
            request = user_pb2.CreateUserRequest(user=user_pb2.User(name="x", email=f"u{i}@example.com"))
            await stub.CreateUser(request, timeout=2)


async def test_a_stalled_exporter_drops_and_counts_spans_instead_of_blocking_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "16")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    exporter = StalledExporter()
    server = await start_server(_settings(tmp_path), setup_telemetry(SERVICE_NAME, span_exporter=exporter))
    try:
        await _create_many(server, 200)  # ~600 spans against a 16-span queue
        assert exporter.calls >= 1, "the exporter was reached and is stalled"
        assert _dropped_spans(server) > 0
    finally:
        exporter.release.set()
        await server.shutdown(grace=0)


async def test_an_unreachable_collector_does_not_fail_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    server = await start_server(_settings(tmp_path), setup_telemetry(SERVICE_NAME))
    try:
        await _create_many(server, 100)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await create_user(user_pb2_grpc.UserServiceStub(channel), "Last", "last@example.com")
    finally:
        await server.shutdown(grace=0)
