"""Spans of all four RPC kinds: names, kinds, attributes, status, parents, stream endings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from tests.conftest import create_user, eventually
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.server import RunningServer
from user_service.telemetry.tracing import build_resource, build_tracer_provider, client_interceptors

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub as Stub


@pytest.fixture
def client_spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced_stub(server: RunningServer, client_spans: InMemorySpanExporter) -> AsyncIterator[Stub]:
    """A client whose interceptors start client spans and inject W3C trace context."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(client_spans))
    interceptors = client_interceptors(provider)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", interceptors=interceptors) as channel:
        yield user_pb2_grpc.UserServiceStub(channel)


def _one(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    matching = [span for span in spans.get_finished_spans() if span.name == name]
    assert len(matching) == 1, (
        f"expected one {name!r} span, got {[s.name for s in spans.get_finished_spans()]}"
    )
    return matching[0]


async def _ended(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    """The one span ``name``, once ended: a call that ends with an error or a cancellation can be
    over for the client (an abort sends its status at once) before the server's span ends."""
    await eventually(lambda: any(s.name == name for s in spans.get_finished_spans()))
    return _one(spans, name)


def _children(spans: InMemorySpanExporter, parent: ReadableSpan) -> Iterator[ReadableSpan]:
    parent_id = parent.context.span_id if parent.context else None
    return (s for s in spans.get_finished_spans() if s.parent is not None and s.parent.span_id == parent_id)


async def test_unary_server_span_continues_the_client_trace_with_store_and_publish_children(
    traced_stub: Stub, spans: InMemorySpanExporter, client_spans: InMemorySpanExporter
) -> None:
    await create_user(traced_stub, "Ada", "ada@example.com")
    client = _one(client_spans, "/user.v1.UserService/CreateUser")
    server = _one(spans, "/user.v1.UserService/CreateUser")
    assert (client.kind, server.kind) == (SpanKind.CLIENT, SpanKind.SERVER)
    assert server.context is not None
    assert client.context is not None
    assert server.parent is not None
    assert server.context.trace_id == client.context.trace_id
    assert server.parent.span_id == client.context.span_id
    assert server.attributes is not None
    expected = {
        "rpc.system": "grpc",
        "rpc.service": "user.v1.UserService",
        "rpc.method": "CreateUser",
        "rpc.grpc.status_code": 0,
    }
    assert {key: server.attributes.get(key) for key in expected} == expected
    assert server.attributes["network.peer.address"] == "127.0.0.1"
    children = {span.name: span for span in _children(spans, server)}
    assert set(children) == {"INSERT users", "user_events publish"}
    insert = children["INSERT users"]
    assert insert.kind == SpanKind.CLIENT
    assert insert.attributes is not None
    assert insert.attributes["db.system.name"] == "sqlite"
    assert insert.attributes["db.operation.name"] == "INSERT"
    assert insert.attributes["db.collection.name"] == "users"
    assert children["user_events publish"].kind == SpanKind.PRODUCER


async def test_spans_carry_no_user_data(traced_stub: Stub, spans: InMemorySpanExporter) -> None:
    await create_user(traced_stub, "Secret Name", "secret@example.com")
    for span in spans.get_finished_spans():
        values = " ".join(str(value) for value in (span.attributes or {}).values())
        assert "Secret" not in values, span.name
        assert "secret@" not in values, span.name


async def test_a_client_mistake_is_recorded_with_its_status_code(
    traced_stub: Stub, spans: InMemorySpanExporter
) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await traced_stub.GetUser(user_pb2.GetUserRequest(id=404))
    server = await _ended(spans, "/user.v1.UserService/GetUser")
    assert server.attributes is not None
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    select = next(_children(spans, server))
    assert select.attributes is not None
    assert select.attributes["error.type"] == "UserNotFoundError"
    assert select.status.status_code != StatusCode.ERROR, "a missing row is an outcome, not a database error"


async def test_client_streaming_span_has_a_child_per_item(
    traced_stub: Stub, spans: InMemorySpanExporter
) -> None:
    async def items() -> AsyncIterator[user_pb2.CreateUserRequest]:
        for name in ("a", "b", "c"):
            yield user_pb2.CreateUserRequest(user=user_pb2.User(name=name, email=f"{name}@example.com"))

    await traced_stub.BatchCreateUsers(items())
    server = _one(spans, "/user.v1.UserService/BatchCreateUsers")
    assert server.kind == SpanKind.SERVER
    assert [s.name for s in _children(spans, server)].count("INSERT users") == 3


async def test_bidi_streaming_span_has_a_child_per_lookup(
    traced_stub: Stub, spans: InMemorySpanExporter
) -> None:
    user = await create_user(traced_stub)
    call = traced_stub.LookupUsers()
    for _ in range(2):
        await call.write(user_pb2.GetUserRequest(id=user.id))
        await call.read()
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
    server = await _ended(spans, "/user.v1.UserService/LookupUsers")
    assert [s.name for s in _children(spans, server)] == ["SELECT users", "SELECT users"]


async def test_server_streaming_span_ends_when_the_client_cancels(
    traced_stub: Stub, spans: InMemorySpanExporter, server: RunningServer
) -> None:
    await create_user(traced_stub)
    call = traced_stub.SubscribeUsers(user_pb2.SubscribeUsersRequest(since_event_id=0))
    events = call.__aiter__()
    await anext(events)
    assert not any(s.name == "/user.v1.UserService/SubscribeUsers" for s in spans.get_finished_spans())
    call.cancel()
    stream = await _ended(spans, "/user.v1.UserService/SubscribeUsers")
    names = [s.name for s in _children(spans, stream)]
    assert "SELECT user_events" in names, "the replay reads the store under the stream span"
    assert "user_events deliver" in names
    assert server.broker.subscriber_count == 0


async def test_server_streaming_span_ends_on_server_shutdown(
    traced_stub: Stub, spans: InMemorySpanExporter, server: RunningServer
) -> None:
    call = traced_stub.SubscribeUsers(user_pb2.SubscribeUsersRequest())
    await eventually(lambda: server.broker.subscriber_count == 1)
    await server.shutdown(grace=1)
    with pytest.raises(grpc.aio.AioRpcError):
        await call.read()
    stream = _one(spans, "/user.v1.UserService/SubscribeUsers")
    assert stream.attributes is not None
    assert stream.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]


async def test_a_request_its_caller_did_not_sample_records_no_spans(
    server: RunningServer, spans: InMemorySpanExporter
) -> None:
    """Parent-based sampling: the server follows the caller's decision, children included."""
    spans.clear()  # the start-up count of users is traced on its own
    provider = TracerProvider(sampler=ALWAYS_OFF)
    interceptors = client_interceptors(provider)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", interceptors=interceptors) as channel:
        await create_user(user_pb2_grpc.UserServiceStub(channel))
    assert spans.get_finished_spans() == ()


async def test_health_checks_are_not_traced(server: RunningServer, spans: InMemorySpanExporter) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(3):
            await health.Check(health_pb2.HealthCheckRequest())
    await asyncio.sleep(0.05)
    assert [s.name for s in spans.get_finished_spans() if "Health" in s.name] == []


def test_the_server_samples_its_own_traces_at_its_ratio_and_follows_callers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Head sampling by default (the server's trace_sampling_ratio): traces it starts are kept
    at that ratio, a caller's sampled trace is always continued; OTEL_TRACES_SAMPLER wins."""
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    tracer = build_tracer_provider(build_resource("t"), MeterProvider(), sampling_ratio=0.0).get_tracer("t")
    assert not tracer.start_span("root").is_recording()
    caller = SpanContext(trace_id=1, span_id=1, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    assert tracer.start_span("child", context=set_span_in_context(NonRecordingSpan(caller))).is_recording()

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    assert (
        build_tracer_provider(build_resource("t"), MeterProvider(), sampling_ratio=0.0)
        .get_tracer("t")
        .start_span("x")
        .is_recording()
    )
