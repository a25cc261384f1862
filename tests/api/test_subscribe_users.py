"""SubscribeUsers: replay joined to live events, bounded buffers, cut-off, resume, cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import StartServer, create_user, drain, eventually
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.server import RunningServer

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub as Stub

CREATED = user_pb2.UserEvent.EVENT_TYPE_CREATED
UPDATED = user_pb2.UserEvent.EVENT_TYPE_UPDATED
DELETED = user_pb2.UserEvent.EVENT_TYPE_DELETED


def _subscribe(
    stub: Stub, since: int | None = None, timeout: float = 20
) -> grpc.aio.UnaryStreamCall[user_pb2.SubscribeUsersRequest, user_pb2.UserEvent]:
    request = user_pb2.SubscribeUsersRequest()
    if since is not None:
        request.since_event_id = since
    return stub.SubscribeUsers(request, timeout=timeout)


async def _take(events: AsyncIterator[user_pb2.UserEvent], count: int) -> list[user_pb2.UserEvent]:
    return [await anext(events) for _ in range(count)]


async def _drain_into(received: list[int], events: AsyncIterator[user_pb2.UserEvent]) -> None:
    async for event in events:
        received.append(event.event_id)


async def _write_users(stub: Stub, count: int, prefix: str = "w") -> None:
    for i in range(count):
        await create_user(stub, f"{prefix}{i}", f"{prefix}{i}@example.com")


async def test_replay_from_zero_then_live_events_of_every_type(stub: Stub) -> None:
    user = await create_user(stub)
    call = _subscribe(stub, since=0)
    events = call.__aiter__()
    (created,) = await _take(events, 1)
    await stub.UpdateUser(user_pb2.UpdateUserRequest(user=user_pb2.User(id=user.id, name="Renamed")))
    await stub.DeleteUser(user_pb2.DeleteUserRequest(id=user.id))
    updated, deleted = await _take(events, 2)
    call.cancel()
    assert [e.event_id for e in (created, updated, deleted)] == [1, 2, 3]
    assert [e.type for e in (created, updated, deleted)] == [CREATED, UPDATED, DELETED]
    assert created.user == user
    assert updated.user.name == "Renamed"
    assert deleted.user.name == "Renamed", "a delete event carries the user's last state"
    assert deleted.event_time.ToDatetime() >= created.event_time.ToDatetime()


async def test_since_event_id_replays_only_later_events(stub: Stub) -> None:
    await _write_users(stub, 5)
    call = _subscribe(stub, since=3)
    assert [e.event_id for e in await _take(call.__aiter__(), 2)] == [4, 5]
    call.cancel()


async def test_unset_since_event_id_means_live_events_only(server: RunningServer, stub: Stub) -> None:
    await _write_users(stub, 3, "old")
    call = _subscribe(stub)
    await eventually(lambda: server.broker.subscriber_count == 1)
    await _write_users(stub, 1, "new")
    (event,) = await _take(call.__aiter__(), 1)
    call.cancel()
    assert (event.event_id, event.user.name) == (4, "new0")


async def test_replay_to_live_switch_has_no_gap_or_duplicate_under_concurrent_writes(
    start: StartServer,
) -> None:
    """Subscribers joining at different moments of a write burst each see 1..N exactly."""
    server = await start(subscriber_buffer=8)  # small: replays overflow and must catch up again
    total = 400
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        await _write_users(stub, 100, "before")

        async def collect() -> list[int]:
            call = _subscribe(stub, since=0)
            ids = []
            async for event in call:
                ids.append(event.event_id)
                if event.event_id == total:
                    call.cancel()
                    break
            return ids

        writer = asyncio.create_task(_write_users(stub, total - 100, "during"))
        subscribers = []
        for _ in range(4):
            subscribers.append(asyncio.create_task(collect()))
            await asyncio.sleep(0.05)
        await writer
        for ids in await asyncio.gather(*subscribers):
            assert ids == list(range(1, total + 1))


async def test_slow_subscriber_is_cut_off_with_bounded_memory_and_can_resume(start: StartServer) -> None:
    buffer = 16
    server = await start(subscriber_buffer=buffer)
    # A small, fixed flow-control window so that a client that stops reading backs up the server.
    options = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16 * 1024)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=options) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        call = _subscribe(stub, since=0, timeout=60)
        events = call.__aiter__()
        await _take(events, 0)
        await eventually(lambda: server.broker.subscriber_count == 1)
        high_water = 0
        for i in range(1500):  # the subscriber reads nothing meanwhile
            await create_user(stub, "x" * 90 + str(i), f"slow{i}@example.com")
            high_water = max(high_water, server.broker.buffered_events)
        assert high_water <= buffer, "a subscriber's buffer grew past its bound"

        received: list[int] = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _drain_into(received, events)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert received == list(range(1, len(received) + 1)), "delivered events must have no gap"
        assert f"since_event_id={received[-1]}" in (caught.value.details() or "")
        await eventually(lambda: server.broker.subscriber_count == 0)

        resumed = _subscribe(stub, since=received[-1])
        rest = [e.event_id for e in await _take(resumed.__aiter__(), 1500 - len(received))]
        resumed.cancel()
        assert received + rest == list(range(1, 1501))


async def test_cancelled_stream_releases_its_subscription_at_once(server: RunningServer, stub: Stub) -> None:
    await create_user(stub)
    call = _subscribe(stub, since=0)
    await _take(call.__aiter__(), 1)
    assert server.broker.subscriber_count == 1
    call.cancel()
    await eventually(lambda: server.broker.subscriber_count == 0, within=2)


async def test_deadline_ends_the_stream_and_releases_it(server: RunningServer, stub: Stub) -> None:
    call = _subscribe(stub, since=0, timeout=0.3)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await drain(call)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await eventually(lambda: server.broker.subscriber_count == 0, within=2)


async def test_subscribers_beyond_the_limit_get_resource_exhausted(start: StartServer) -> None:
    server = await start(max_subscribers=2)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        first, second = _subscribe(stub), _subscribe(stub)
        await eventually(lambda: server.broker.subscriber_count == 2)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _take(_subscribe(stub).__aiter__(), 1)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.cancel()
        second.cancel()


async def test_negative_since_event_id_is_invalid_argument(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _take(_subscribe(stub, since=-1).__aiter__(), 1)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "since_event_id" in (caught.value.details() or "")


async def test_shutdown_ends_streams_with_unavailable_and_a_resume_point(start: StartServer) -> None:
    server = await start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        await _write_users(stub, 2)
        call = _subscribe(stub, since=0)
        events = call.__aiter__()
        await _take(events, 2)
        shutdown = asyncio.create_task(server.shutdown(grace=5))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await anext(events)
        await shutdown
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "since_event_id=2" in (caught.value.details() or "")
