"""ListUsers: keyset pagination that stays consistent under concurrent writes."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import StartServer, create_user
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub as Stub


async def _list_all(stub: Stub, page_size: int) -> list[list[int]]:
    """Ids of every page, following next_page_token to the end."""
    pages: list[list[int]] = []
    token = ""
    while True:
        response = await stub.ListUsers(user_pb2.ListUsersRequest(page_size=page_size, page_token=token))
        pages.append([user.id for user in response.users])
        token = response.next_page_token
        if not token:
            return pages


async def test_pages_cover_every_user_once_in_id_order(stub: Stub) -> None:
    ids = [(await create_user(stub, f"U{i}", f"u{i}@example.com")).id for i in range(10)]
    pages = await _list_all(stub, page_size=3)
    assert [len(page) for page in pages] == [3, 3, 3, 1]
    assert [user_id for page in pages for user_id in page] == ids


async def test_exact_multiple_of_page_size_ends_without_an_empty_page(stub: Stub) -> None:
    for i in range(4):
        await create_user(stub, f"U{i}", f"u{i}@example.com")
    assert [len(page) for page in await _list_all(stub, page_size=2)] == [2, 2]


async def test_empty_store_lists_nothing(stub: Stub) -> None:
    response = await stub.ListUsers(user_pb2.ListUsersRequest())
    assert list(response.users) == []
    assert response.next_page_token == ""


async def test_page_size_defaults_and_clamps(start: StartServer) -> None:
    server = await start(default_page_size=2, max_page_size=3)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        for i in range(5):
            await create_user(stub, f"U{i}", f"u{i}@example.com")
        assert len((await stub.ListUsers(user_pb2.ListUsersRequest())).users) == 2
        assert len((await stub.ListUsers(user_pb2.ListUsersRequest(page_size=100))).users) == 3


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (user_pb2.ListUsersRequest(page_size=-1), "page_size"),
        (user_pb2.ListUsersRequest(page_token="garbage!"), "page_token"),
        (user_pb2.ListUsersRequest(page_token="dXNlcnMvYWZ0ZXIveA"), "page_token"),  # users/after/x
        (user_pb2.ListUsersRequest(page_token="b3RoZXI"), "page_token"),  # other
    ],
)
async def test_invalid_page_request_is_invalid_argument(
    stub: Stub, request_: user_pb2.ListUsersRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListUsers(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")


async def test_pages_stay_consistent_while_others_insert_and_delete(stub: Stub) -> None:
    """No id twice, ascending order, and every user that lived throughout is listed."""
    rng = random.Random(7)
    initial = [(await create_user(stub, f"U{i}", f"u{i}@example.com")).id for i in range(120)]
    doomed = set(rng.sample(initial, 40))
    stable = set(initial) - doomed
    stop = asyncio.Event()
    pending = list(doomed)
    rng.shuffle(pending)
    inserted = 0

    async def churn() -> None:
        nonlocal inserted
        while not stop.is_set():
            await create_user(stub, f"New{inserted}", f"new{inserted}@example.com")
            inserted += 1
            if pending:
                await stub.DeleteUser(user_pb2.DeleteUserRequest(id=pending.pop()))
            await asyncio.sleep(0)

    writer = asyncio.create_task(churn())
    try:
        pages = []
        token = ""
        while True:
            response = await stub.ListUsers(user_pb2.ListUsersRequest(page_size=7, page_token=token))
            pages.append([user.id for user in response.users])
            await asyncio.sleep(0.002)  # let the writer interleave between pages
            token = response.next_page_token
            if not token:
                break
    finally:
        stop.set()
        await writer
    assert inserted > 5, "the writer did not interleave with the listing"
    assert len(pending) < len(doomed), "the writer did not interleave with the listing"
    listed = [user_id for page in pages for user_id in page]
    assert len(listed) == len(set(listed)), "an id was listed twice"
    assert listed == sorted(listed)
    assert stable <= set(listed), "a user that existed for the whole listing was skipped"
