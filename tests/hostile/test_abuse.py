"""Floods and malformed input: what anyone can send, with a token or without one."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.hostile.conftest import HostileServer
from tests.support.raw_http2 import RawHttp2Client
from user_service.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

if TYPE_CHECKING:
    from user_service.gen.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
REFUSED_REFLECTIONS = (  # as /metrics exposes it: labels in alphabetical order
    'grpc_server_handled_total{grpc_code="ResourceExhausted",grpc_method="ServerReflectionInfo",'
    'grpc_service="grpc.reflection.v1alpha.ServerReflection",grpc_type="bidi_stream"}'
)
ANONYMOUS_STREAMS = 2_000
PUBLIC_BUDGET = 64  # USER_SERVICE_MAX_PUBLIC_RPCS default
REFLECTION_LOOKUPS = 200
UNARY_BURST = 300
IDLE_SCRAPERS = 200


async def test_anonymous_streams_cannot_lock_out_health_or_the_service(hostile: HostileServer) -> None:
    """2,000 idle reflection streams without a token: the public budget refuses all but 64,
    while health checks and authenticated calls go on. The first flood fills grpc's and the
    allocator's pools (2,000 concurrent HTTP/2 streams: ~25 MiB, more the faster the server
    refuses them); the measured second one proves the server returns to where it was."""
    await _flood_with_anonymous_streams(hostile)
    behaviour = f"{ANONYMOUS_STREAMS} idle reflection streams, no token (2nd flood)"
    async with hostile.attack(behaviour, ANONYMOUS_STREAMS):
        await _flood_with_anonymous_streams(hostile)


async def _flood_with_anonymous_streams(hostile: HostileServer) -> None:
    refused_before = hostile.metric(REFUSED_REFLECTIONS)
    async with hostile.channel() as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        streams = [reflection.ServerReflectionInfo() for _ in range(ANONYMOUS_STREAMS)]
        ended, idle = await asyncio.wait(
            [asyncio.ensure_future(stream.code()) for stream in streams], timeout=10
        )
        assert len(idle) == PUBLIC_BUDGET, "admitted streams stay open, idle"
        # The service refuses them with RESOURCE_EXHAUSTED; in a burst this size grpc's core
        # also sheds some streams before they reach any handler, and those end CANCELLED.
        assert {code.result() for code in ended} <= {RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
        refused = hostile.metric(REFUSED_REFLECTIONS)
        assert refused - refused_before >= (ANONYMOUS_STREAMS - PUBLIC_BUDGET) * 0.8
        await hostile.assert_healthy()  # health and the service answer while the streams are held
        for stream in streams:
            stream.cancel()
        await asyncio.wait(idle)


async def test_the_standard_reflection_client_in_a_loop(hostile: HostileServer) -> None:
    """grpcio-reflection's own client crashed the server within 1-14 lookups."""

    def look_up() -> None:
        with grpc.insecure_channel(hostile.target) as channel:
            database = ProtoReflectionDescriptorDatabase(channel)
            assert "user.v1.UserService" in database.get_services()
            service = DescriptorPool(database).FindServiceByName("user.v1.UserService")
            assert service.FindMethodByName("SubscribeUsers").server_streaming

    async with hostile.attack("grpcio-reflection descriptor lookups", REFLECTION_LOOKUPS):
        for _ in range(REFLECTION_LOOKUPS // 10):
            await asyncio.gather(*(asyncio.to_thread(look_up) for _ in range(10)))


async def test_reflection_and_health_streams_reset_mid_write(hostile: HostileServer) -> None:
    behaviour = "reflection + Health/Watch streams reset mid-write"
    async with hostile.attack(behaviour, 2 * REFLECTION_LOOKUPS), hostile.channel() as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(REFLECTION_LOOKUPS):
            stream = reflection.ServerReflectionInfo()
            await stream.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            stream.cancel()
            watch = health.Watch(health_pb2.HealthCheckRequest())
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()


async def test_a_flood_of_wrong_secrets_is_throttled(hostile: HostileServer) -> None:
    """Each check costs ~30 ms and 16 MiB: 128 concurrent wrong logins are refused fast
    (RESOURCE_EXHAUSTED with a retry time) or checked a few at a time — never INTERNAL."""
    client_id = hostile.credentials.secrets["reader"][0]

    async def wrong_login(auth: AuthServiceAsyncStub) -> None:
        try:
            await auth.Login(auth_pb2.LoginRequest(client_id=client_id, client_secret="wrong"), timeout=30)
        except grpc.aio.AioRpcError as error:
            codes.append(error.code())
            details.append(error.details() or "")

    codes: list[grpc.StatusCode] = []
    details: list[str] = []
    async with hostile.attack("128 concurrent logins with a wrong secret", 128), hostile.channel() as channel:
        auth: AuthServiceAsyncStub = auth_pb2_grpc.AuthServiceStub(channel)
        await asyncio.gather(*(wrong_login(auth) for _ in range(128)))
        await hostile.assert_healthy()
    assert set(codes) <= {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    throttled = [
        text for code, text in zip(codes, details, strict=True) if code == grpc.StatusCode.RESOURCE_EXHAUSTED
    ]
    assert all("retry in" in text for text in throttled)
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) <= 10, "the per-peer bucket holds 10"


async def test_a_burst_of_unary_calls_on_one_connection_all_succeed(hostile: HostileServer) -> None:
    """300 calls at once on one connection: none refused for HTTP/2 stream limits."""
    behaviour = f"{UNARY_BURST} concurrent unary calls on one connection"
    async with hostile.attack(behaviour, UNARY_BURST), hostile.channel() as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        requests = [user_pb2.GetUserRequest(id=hostile.seeded_ids[n % 50]) for n in range(UNARY_BURST)]
        responses = await asyncio.gather(*(users.GetUser(r, metadata=hostile.metadata()) for r in requests))
    assert len(responses) == UNARY_BURST


async def test_idle_connections_to_the_metrics_port_hold_no_threads(hostile: HostileServer) -> None:
    host, _, rest = hostile.process.metrics_url.removeprefix("http://").partition(":")
    port = int(rest.partition("/")[0])
    async with hostile.attack(f"{IDLE_SCRAPERS} idle TCP connections to /metrics", IDLE_SCRAPERS):
        threads_before = hostile.process.resources().threads
        idle = [socket.create_connection((host, port)) for _ in range(IDLE_SCRAPERS)]
        await asyncio.sleep(0.5)
        assert hostile.process.resources().threads <= threads_before + 16
        for connection in idle:
            connection.close()


async def test_one_caller_cannot_take_every_subscription_slot(hostile: HostileServer) -> None:
    replay = user_pb2.SubscribeUsersRequest(since_event_id=0)
    async with hostile.attack("one caller opening 101 subscriptions", 101), hostile.channel() as channel:
        users: UserServiceAsyncStub = user_pb2_grpc.UserServiceStub(channel)
        held = [users.SubscribeUsers(replay, metadata=hostile.metadata("reader")) for _ in range(100)]
        for call in held:
            await call.read()
        one_too_many = users.SubscribeUsers(replay, metadata=hostile.metadata("reader"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await one_too_many.read()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "100 subscriptions" in (refused.value.details() or "")
        another_caller = users.SubscribeUsers(replay, metadata=hostile.metadata("writer"))
        assert isinstance(await another_caller.read(), user_pb2.UserEvent)
        for call in [*held, another_caller]:
            call.cancel()


async def test_header_values_that_are_not_utf8(hostile: HostileServer) -> None:
    """Answered with a clear status, and no traceback per request in the log."""
    async with hostile.attack("requests with invalid UTF-8 header values", 50):
        client = await RawHttp2Client.connect(hostile.target)
        try:
            for n in range(50):
                header = (b"authorization", b"Bearer \xff\xfe") if n % 2 else (b"x-tenant", b"\xc3\x28")
                request = user_pb2.GetUserRequest(id=hostile.seeded_ids[0]).SerializeToString()
                response = await client.unary(
                    "/user.v1.UserService/GetUser", request, [header, *_auth_unless(header, hostile)]
                )
                assert response.grpc_status is not None, "every request gets a gRPC status"
                assert response.grpc_status not in (2, 13), response.grpc_message  # UNKNOWN, INTERNAL
        finally:
            await client.close()


def _auth_unless(header: tuple[bytes, bytes], hostile: HostileServer) -> list[tuple[bytes, bytes]]:
    if header[0] == b"authorization":
        return []
    return [(b"authorization", f"Bearer {hostile.tokens['reader']}".encode())]


async def test_unknown_methods_and_services(hostile: HostileServer) -> None:
    async with hostile.attack("calls to methods that do not exist", 100):
        client = await RawHttp2Client.connect(hostile.target)
        try:
            for n in range(100):
                path = f"/user.v1.UserService/Nope{n}" if n % 2 else f"/no.such.Service{uuid.uuid4().hex}/Get"
                response = await client.unary(path, b"", [])
                assert response.grpc_status == grpc.StatusCode.UNIMPLEMENTED.value[0]
        finally:
            await client.close()
