"""BatchCreateUsers (client streaming) and LookupUsers (bidi streaming)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import StartServer, create_user, drain
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.server import RunningServer

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub as Stub


async def _creates(users: Iterable[tuple[str, str]]) -> AsyncIterator[user_pb2.CreateUserRequest]:
    for name, email in users:
        yield user_pb2.CreateUserRequest(user=user_pb2.User(name=name, email=email))


class TestBatchCreateUsers:
    async def test_each_item_gets_its_own_result_in_order(self, stub: Stub) -> None:
        await create_user(stub, email="taken@example.com")
        response = await stub.BatchCreateUsers(
            _creates(
                [
                    ("Ada", "ada@example.com"),
                    ("", "nameless@example.com"),
                    ("Taken", "taken@example.com"),
                    ("Grace", "grace@example.com"),
                    ("Twice", "ADA@example.com"),
                ]
            )
        )
        outcomes = [result.WhichOneof("outcome") for result in response.results]
        assert outcomes == ["user", "error", "error", "user", "error"]
        assert response.created_count == 2
        invalid, taken, duplicate = (response.results[i].error for i in (1, 2, 4))
        assert (invalid.code, invalid.field) == (grpc.StatusCode.INVALID_ARGUMENT.value[0], "user.name")
        assert (taken.code, taken.field) == (grpc.StatusCode.ALREADY_EXISTS.value[0], "user.email")
        assert duplicate.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
        listed = await stub.ListUsers(user_pb2.ListUsersRequest())
        assert {u.email for u in listed.users} == {
            "taken@example.com",
            "ada@example.com",
            "grace@example.com",
        }

    async def test_empty_stream_creates_nothing(self, stub: Stub) -> None:
        response = await stub.BatchCreateUsers(_creates([]))
        assert (len(response.results), response.created_count) == (0, 0)

    async def test_more_items_than_the_limit_is_invalid_argument(self, start: StartServer) -> None:
        server = await start(max_batch_size=3)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = user_pb2_grpc.UserServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.BatchCreateUsers(_creates((f"U{i}", f"u{i}@example.com") for i in range(5)))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 3" in (caught.value.details() or "")


class TestLookupUsers:
    async def test_answers_each_id_as_it_arrives(self, stub: Stub) -> None:
        """The client only sends the next id after reading the previous answer."""
        ada = await create_user(stub, "Ada", "ada@example.com")
        grace = await create_user(stub, "Grace", "grace@example.com")
        requests: asyncio.Queue[user_pb2.GetUserRequest | None] = asyncio.Queue()

        async def outgoing() -> AsyncIterator[user_pb2.GetUserRequest]:
            while (request := await requests.get()) is not None:
                yield request

        call = stub.LookupUsers(outgoing())
        answers = []
        for user in (grace, ada, grace):
            await requests.put(user_pb2.GetUserRequest(id=user.id))
            answer = await call.read()
            assert isinstance(answer, user_pb2.GetUserResponse)
            answers.append(answer.user)
        await requests.put(None)
        assert answers == [grace, ada, grace]
        assert await call.read() == grpc.aio.EOF

    async def test_missing_id_ends_the_stream_with_not_found(self, stub: Stub) -> None:
        ada = await create_user(stub)

        async def ids() -> AsyncIterator[user_pb2.GetUserRequest]:
            for user_id in (ada.id, 999, ada.id):
                yield user_pb2.GetUserRequest(id=user_id)

        received: list[int] = []

        async def lookup() -> None:
            async for response in stub.LookupUsers(ids()):
                received.append(response.user.id)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await lookup()
        assert received == [ada.id]
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "999" in (caught.value.details() or "")

    async def test_invalid_id_is_invalid_argument(self, stub: Stub) -> None:
        async def ids() -> AsyncIterator[user_pb2.GetUserRequest]:
            yield user_pb2.GetUserRequest(id=0)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await drain(stub.LookupUsers(ids()))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


class TestDeadlines:
    async def test_work_stops_when_a_client_streams_deadline_passes(
        self, server: RunningServer, stub: Stub
    ) -> None:
        async def slow_items() -> AsyncIterator[user_pb2.CreateUserRequest]:
            for i in range(100):
                yield user_pb2.CreateUserRequest(user=user_pb2.User(name=f"U{i}", email=f"u{i}@example.com"))
                await asyncio.sleep(0.05)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.BatchCreateUsers(slow_items(), timeout=0.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # A write already handed to the store when the deadline hit still commits (and
        # publishes its event); let it settle before counting.
        await server.directory.drain()
        created_by_deadline = await server.store.count_users()
        await asyncio.sleep(0.5)
        assert created_by_deadline < 100
        assert await server.store.count_users() == created_by_deadline, (
            "no item is processed after the deadline"
        )

    async def test_a_cancelled_bidi_call_stops_answering(self, stub: Stub) -> None:
        user = await create_user(stub)
        call = stub.LookupUsers()
        await call.write(user_pb2.GetUserRequest(id=user.id))
        assert isinstance(await call.read(), user_pb2.GetUserResponse)
        assert call.cancel()
        assert await call.code() == grpc.StatusCode.CANCELLED
