"""Graceful shutdown of a server process on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2

from devkit.processes import ServerProcess
from tests.conftest import eventually
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _create(name: str) -> user_pb2.CreateUserRequest:
    return user_pb2.CreateUserRequest(user=user_pb2.User(name=name, email=f"{name}@example.com"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_in_flight_call_finishes_within_grace_and_server_exits_cleanly(
    database_url: str, signum: int
) -> None:
    server = ServerProcess(database_url, "--grace-period", "5").start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = user_pb2_grpc.UserServiceStub(channel)
            signalled = asyncio.Event()

            async def items() -> AsyncIterator[user_pb2.CreateUserRequest]:
                yield _create("before")
                # In flight means started on the server: a call still on its way when the
                # shutdown begins is refused, as it should be.
                await eventually(lambda: server.started("BatchCreateUsers") >= 1)
                server.signal(signum)
                signalled.set()
                await asyncio.sleep(0.5)  # the server is draining meanwhile
                yield _create("after")

            response = await stub.BatchCreateUsers(items(), timeout=10)
            assert signalled.is_set()
            assert response.created_count == 2
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetUser(user_pb2.GetUserRequest(id=1), timeout=2)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, "new calls are refused"
        assert server.wait() == 0
    finally:
        server.stop()


async def test_health_is_not_serving_during_the_drain_delay_while_calls_still_work(database_url: str) -> None:
    server = ServerProcess(database_url, "--drain-delay", "1.5", "--grace-period", "1").start()
    try:
        server.signal(signal.SIGTERM)
        deadline = time.monotonic() + 1
        while server.health() != NOT_SERVING:
            assert time.monotonic() < deadline, "health did not turn NOT_SERVING"
            await asyncio.sleep(0.02)
        assert server.health("user.v1.UserService") == NOT_SERVING
        async with grpc.aio.insecure_channel(server.target) as channel:
            created = await user_pb2_grpc.UserServiceStub(channel).CreateUser(_create("late"), timeout=2)
        assert created.user.id == 1
        assert server.wait() == 0
    finally:
        server.stop()


async def test_a_call_that_outlives_the_grace_period_is_cut_and_shutdown_is_bounded(
    database_url: str,
) -> None:
    server = ServerProcess(database_url, "--grace-period", "0.5").start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = user_pb2_grpc.UserServiceStub(channel)

            async def never_ending() -> AsyncIterator[user_pb2.CreateUserRequest]:
                yield _create("first")
                await asyncio.sleep(60)
                yield _create("never")

            call = stub.BatchCreateUsers(never_ending(), timeout=30)
            await asyncio.sleep(0.3)
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
        assert server.wait(timeout=10) == 0
        assert time.monotonic() - started < 5, "shutdown must not wait beyond the grace period"
    finally:
        server.stop()


async def test_subscribers_are_ended_with_unavailable_and_a_resume_point(
    server_process: ServerProcess,
) -> None:
    async with grpc.aio.insecure_channel(server_process.target) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        await stub.CreateUser(_create("ada"))
        call = stub.SubscribeUsers(user_pb2.SubscribeUsersRequest(since_event_id=0), timeout=10)
        events = call.__aiter__()
        assert (await anext(events)).event_id == 1
        server_process.signal(signal.SIGTERM)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await anext(events)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "since_event_id=1" in (caught.value.details() or "")
    assert server_process.wait() == 0


async def test_shutdown_with_writes_blocked_on_clients_that_stopped_reading(database_url: str) -> None:
    """SIGTERM while every stream kind is blocked on its client (full HTTP/2 windows, no
    half-close) once killed the server after the grace period with no `stopped` line."""
    server = ServerProcess(database_url, "--grace-period", "1").start()
    try:
        no_bdp = [("grpc.use_local_subchannel_pool", 1), ("grpc.http2.bdp_probe", 0)]
        async with grpc.aio.insecure_channel(server.target, options=no_bdp) as channel:
            stub = user_pb2_grpc.UserServiceStub(channel)
            await stub.BatchCreateUsers(_create(f"user{n}") for n in range(600))
            replaying = [
                stub.SubscribeUsers(user_pb2.SubscribeUsersRequest(since_event_id=0)) for _ in range(20)
            ]
            lookups = stub.LookupUsers()
            for user_id in (1, 2, 3):
                await lookups.write(user_pb2.GetUserRequest(id=user_id))
            held_batch = stub.BatchCreateUsers()
            await held_batch.write(_create("held"))
            await asyncio.sleep(1.0)  # replays fill their windows; nothing is read
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            assert await asyncio.to_thread(server.wait, 15) == 0
            assert time.monotonic() - started < 6, "grace (1 s) plus a bounded close"
            for call in replaying:
                call.cancel()
        log = server.log()
        assert '"message": "stopped"' in log
        assert "Traceback" not in log
    finally:
        server.stop()
