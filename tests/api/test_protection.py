"""Unexpected failures become a generic INTERNAL; limits answer RESOURCE_EXHAUSTED, never crash."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.conftest import StartServer, create_user, drain, eventually
from user_service.api.interceptors.recovery import INTERNAL_MESSAGE
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.listening import PortInUseError
from user_service.store.sqlite import SqliteUserStore

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub as Stub

SECRET_DETAIL = "no such column: password_hash in SELECT * FROM users WHERE email='ada@example.com'"


async def _broken(*args: Any, **kwargs: Any) -> NoReturn:
    raise RuntimeError(SECRET_DETAIL)


async def test_an_unexpected_error_is_internal_without_leaking_detail(
    stub: Stub, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(SqliteUserStore, "get_user", _broken)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetUser(user_pb2.GetUserRequest(id=1))
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == INTERNAL_MESSAGE
    leaked = f"{error.details()} {error.debug_error_string()} {error.trailing_metadata()}"
    assert "password_hash" not in leaked
    assert "SELECT" not in leaked
    assert any(SECRET_DETAIL in (record.exc_text or str(record.exc_info)) for record in caplog.records)
    # The span ends right after the status is sent: the client may see the status first.
    await eventually(
        lambda: any(s.name == "/user.v1.UserService/GetUser" for s in spans.get_finished_spans())
    )
    server = next(s for s in spans.get_finished_spans() if s.name == "/user.v1.UserService/GetUser")
    assert server.status.status_code == StatusCode.ERROR
    assert any(event.name == "exception" for event in server.events)


async def test_an_unexpected_error_mid_stream_is_internal(
    stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SqliteUserStore, "list_events", _broken)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await drain(stub.SubscribeUsers(user_pb2.SubscribeUsersRequest(since_event_id=0)))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == INTERNAL_MESSAGE


async def test_an_oversized_message_is_resource_exhausted(start: StartServer) -> None:
    server = await start(max_message_bytes=64 * 1024)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await create_user(stub, "x" * 100_000, "big@example.com")
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await create_user(stub, "Small", "small@example.com")  # the server is fine


async def test_calls_without_a_token_have_their_own_budget_and_health_always_answers(
    start: StartServer,
) -> None:
    """Idle anonymous reflection streams fill the public budget, not the service's, and
    health checks are never refused."""
    server = await start(max_public_rpcs=3, max_concurrent_rpcs=1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        held = [reflection.ServerReflectionInfo() for _ in range(3)]
        for stream in held:
            await stream.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            await stream.read()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await reflection.ServerReflectionInfo().read()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "3 concurrent public calls" in (refused.value.details() or "")
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = user_pb2_grpc.UserServiceStub(channel)
        assert (await stub.ListUsers(user_pb2.ListUsersRequest())).users == []
        for stream in held:
            stream.cancel()


async def test_a_second_server_on_a_taken_port_fails_to_start(start: StartServer) -> None:
    """No SO_REUSEPORT: a second instance (on another database, say) must not silently
    share the port and split the traffic."""
    first = await start()
    with pytest.raises(PortInUseError, match="cannot listen"):
        await start(port=first.port)


async def test_calls_beyond_the_concurrency_limit_are_resource_exhausted(start: StartServer) -> None:
    server = await start(max_concurrent_rpcs=2)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        streams = [stub.SubscribeUsers(user_pb2.SubscribeUsersRequest()) for _ in range(2)]
        await eventually(lambda: server.broker.subscriber_count == 2)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetUser(user_pb2.GetUserRequest(id=1))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for stream in streams:
            stream.cancel()
        await eventually(lambda: server.broker.subscriber_count == 0)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetUser(user_pb2.GetUserRequest(id=1))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND, "capacity is back once streams end"


async def test_a_client_pinging_too_often_is_disconnected(start: StartServer) -> None:
    """Keepalive enforcement: pings faster than the server allows earn a GOAWAY."""
    server = await start(min_client_ping_seconds=5)
    abusive = [
        ("grpc.keepalive_time_ms", 100),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=abusive) as channel:
        stream = user_pb2_grpc.UserServiceStub(channel).SubscribeUsers(
            user_pb2.SubscribeUsersRequest(), timeout=30
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stream.read()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "pings" in (caught.value.details() or "").lower()
    await eventually(lambda: server.broker.subscriber_count == 0)
