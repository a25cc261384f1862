"""Structured logs: JSON lines, the active trace id, one access line per RPC, no personal data."""

from __future__ import annotations

import io
import json
import logging
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import StartServer, create_user
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.telemetry.logging import ACCESS_LOGGER, BoundedQueueHandler, LogWriter, configure_logging

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub as Stub

ReadLogs = Callable[[], list[dict[str, Any]]]


@dataclass
class JsonLogs:
    writer: LogWriter
    read: ReadLogs


@pytest.fixture
def json_logs() -> Iterator[JsonLogs]:
    """JSON logging for the test through the process's log writer; ``read()`` flushes and
    parses every line."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    output = io.StringIO()
    writer = configure_logging("INFO", "json", stream=output)
    stopped = False

    def read() -> list[dict[str, Any]]:
        nonlocal stopped
        if not stopped:
            writer.stop()  # drains the queue
            stopped = True
        return [json.loads(line) for line in output.getvalue().splitlines()]

    yield JsonLogs(writer, read)
    if not stopped:
        writer.stop()
    root.handlers, root.level = saved


@pytest.fixture
def read_json_logs(json_logs: JsonLogs) -> ReadLogs:
    return json_logs.read


async def test_one_access_line_per_rpc_carrying_the_trace_id(
    read_json_logs: ReadLogs, start: StartServer, spans: InMemorySpanExporter
) -> None:
    server = await start(access_log="all")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await _create_then_miss(user_pb2_grpc.UserServiceStub(channel))
    await server.shutdown(grace=1)  # the client may hear a status before the server's line is written
    access = [line for line in read_json_logs() if line["logger"] == ACCESS_LOGGER]
    assert [(line["rpc_method"], line["grpc_code"]) for line in access] == [
        ("CreateUser", "OK"),
        ("GetUser", "NotFound"),
    ]
    create = access[0]
    assert (create["rpc_service"], create["grpc_type"]) == ("user.v1.UserService", "unary")
    assert (create["messages_received"], create["messages_sent"]) == (1, 1)
    assert create["duration_ms"] > 0
    assert create["peer"].startswith("ipv4:127.0.0.1:")
    assert create["level"] == "INFO"
    assert create["time"].endswith("+00:00"), "ISO 8601 in UTC"
    server_span = next(s for s in spans.get_finished_spans() if s.name == "/user.v1.UserService/CreateUser")
    assert server_span.context is not None
    assert create["trace_id"] == format(server_span.context.trace_id, "032x")
    assert create["span_id"] == format(server_span.context.span_id, "016x")
    assert "Private" not in json.dumps(access)
    assert "private@" not in json.dumps(access)


async def _create_then_miss(stub: Stub) -> None:
    await create_user(stub, "Private Person", "private@example.com")
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetUser(user_pb2.GetUserRequest(id=999))


async def test_by_default_only_failed_calls_are_logged(read_json_logs: ReadLogs, start: StartServer) -> None:
    """The default (errors_and_slow): a failed call is logged, a fast successful one is not."""
    server = await start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await _create_then_miss(user_pb2_grpc.UserServiceStub(channel))
    await server.shutdown(grace=1)  # the client may hear a status before the server's line is written
    access = [line for line in read_json_logs() if line["logger"] == ACCESS_LOGGER]
    assert [(line["rpc_method"], line["grpc_code"]) for line in access] == [("GetUser", "NotFound")]


async def test_by_default_slow_calls_are_logged(read_json_logs: ReadLogs, start: StartServer) -> None:
    """... and so is a successful call slower than access_log_slow_ms."""
    server = await start(access_log_slow_ms=0.001)  # every call is slower than that
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await user_pb2_grpc.UserServiceStub(channel).ListUsers(user_pb2.ListUsersRequest())
    await server.shutdown(grace=1)  # the client may hear a status before the server's line is written
    access = [line for line in read_json_logs() if line["logger"] == ACCESS_LOGGER]
    assert [(line["rpc_method"], line["grpc_code"]) for line in access] == [("ListUsers", "OK")]


def test_lines_outside_a_span_have_no_trace_id(read_json_logs: ReadLogs) -> None:
    logging.getLogger("user_service.test").warning("plain %s", "message")
    (line,) = read_json_logs()
    assert (line["message"], line["level"], line["logger"]) == (
        "plain message",
        "WARNING",
        "user_service.test",
    )
    assert "trace_id" not in line


def test_a_full_log_queue_drops_and_counts_instead_of_blocking() -> None:
    handler = BoundedQueueHandler(capacity=2)
    logger = logging.getLogger("user_service.test.bounded")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(5):
            logger.warning("record %d", i)
    finally:
        logger.removeHandler(handler)
    assert isinstance(handler.queue, queue.Queue)
    assert (handler.queue.qsize(), handler.dropped) == (2, 3)


async def test_log_records_are_exported_with_the_calls_trace_and_the_lines_fields(
    json_logs: JsonLogs,
    start: StartServer,
    spans: InMemorySpanExporter,
    log_records: InMemoryLogRecordExporter,
) -> None:
    """Over OTLP, a failed call's access line is a log record whose own trace context is the
    server span's (sampled flag included), whose attributes are the JSON line's fields, and
    whose resource is the spans' resource: the same service.name and service.instance.id."""
    server = await start(log_writer=json_logs.writer)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await _create_then_miss(user_pb2_grpc.UserServiceStub(channel))
    await server.shutdown(grace=1)  # every line written, handed to OTLP and exported
    (line,) = [line for line in json_logs.read() if line["logger"] == ACCESS_LOGGER]
    exports = log_records.get_finished_logs()
    (exported,) = [
        r for r in exports if r.instrumentation_scope and r.instrumentation_scope.name == ACCESS_LOGGER
    ]
    record = exported.log_record
    server_span = next(s for s in spans.get_finished_spans() if s.name == "/user.v1.UserService/GetUser")
    assert server_span.context is not None
    assert (record.trace_id, record.span_id) == (server_span.context.trace_id, server_span.context.span_id)
    assert record.trace_flags is not None
    assert record.trace_flags.sampled
    assert (record.body, record.severity_text) == (line["message"], "INFO")
    assert record.attributes is not None
    envelope = ("level", "logger", "message", "time", "trace_id", "span_id")
    assert {k: v for k, v in line.items() if k not in envelope} == dict(record.attributes)
    assert exported.resource.attributes == server_span.resource.attributes


async def test_opentelemetrys_own_complaints_stay_on_stderr(
    json_logs: JsonLogs, start: StartServer, log_records: InMemoryLogRecordExporter
) -> None:
    """An exporter's warning is not queued for export (it could be about that very export):
    written to stderr, not sent."""
    server = await start(log_writer=json_logs.writer)
    logging.getLogger("opentelemetry.exporter.otlp").warning("Failed to export logs")
    logging.getLogger("user_service.test").warning("the service's own warning")
    written = {line["message"] for line in json_logs.read()}
    assert written >= {"Failed to export logs", "the service's own warning"}
    await server.shutdown(grace=0)
    assert [r.log_record.body for r in log_records.get_finished_logs()] == ["the service's own warning"]
