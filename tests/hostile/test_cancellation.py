"""Clients that cancel, or let their deadline expire, at every phase of every RPC kind.

The first of these crashed the server (SIGSEGV): cancel ``SubscribeUsers`` after one
replayed event and the access log read the freed call in a ``finally`` that ran later.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.hostile.conftest import HostileServer
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub

ITERATIONS = 200
CONCURRENCY = 20
Attempt = Callable[["UserServiceAsyncStub", int], Awaitable[None]]


async def _repeat(hostile: HostileServer, attempt: Attempt, iterations: int = ITERATIONS) -> None:
    """``iterations`` attempts, ``CONCURRENCY`` at a time, on one connection. An attempt
    may end in any status: the server's survival is what is under test."""
    async with hostile.channel() as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        for first in range(0, iterations, CONCURRENCY):
            await asyncio.gather(
                *(_tolerant(attempt(users, n)) for n in range(first, min(first + CONCURRENCY, iterations)))
            )


async def _tolerant(attempt: Awaitable[None]) -> None:
    with suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
        await attempt


@asynccontextmanager
async def _writes_flowing(hostile: HostileServer) -> AsyncIterator[None]:
    """Updates a user in a loop, so live subscribers have events arriving."""

    async def write() -> None:
        async with hostile.channel() as channel:
            users = user_pb2_grpc.UserServiceStub(channel)
            request = user_pb2.UpdateUserRequest(user=user_pb2.User(id=hostile.seeded_ids[0]))
            request.update_mask.paths.append("name")
            for n in range(100_000):
                request.user.name = f"Renamed {n}"
                await users.UpdateUser(request, metadata=hostile.metadata(), timeout=5)
                await asyncio.sleep(0.002)

    writer = asyncio.create_task(write())
    try:
        yield
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


def _subscribe(users: UserServiceAsyncStub, hostile: HostileServer, since: int | None, **kwargs: Any) -> Any:
    request = (
        user_pb2.SubscribeUsersRequest()
        if since is None
        else user_pb2.SubscribeUsersRequest(since_event_id=since)
    )
    return users.SubscribeUsers(request, metadata=hostile.metadata("reader"), **kwargs)


def _get(user_id: int) -> user_pb2.GetUserRequest:
    return user_pb2.GetUserRequest(id=user_id)


def _new_user() -> user_pb2.CreateUserRequest:
    tag = uuid.uuid4().hex[:12]
    return user_pb2.CreateUserRequest(user=user_pb2.User(name=f"Hostile {tag}", email=f"{tag}@example.com"))


@pytest.mark.parametrize(
    "phase", ["before the first message", "mid-replay", "during the live tail", "while idle"]
)
async def test_subscribers_cancelling_at_every_phase(hostile: HostileServer, phase: str) -> None:
    async def attempt(users: UserServiceAsyncStub, n: int) -> None:
        if phase == "before the first message":
            call = _subscribe(users, hostile, 0)
            await call.wait_for_connection()
            await asyncio.sleep(random.uniform(0, 0.001))
        elif phase == "mid-replay":
            call = _subscribe(users, hostile, 0)
            for _ in range(1 + n % 5):
                await call.read()
        elif phase == "during the live tail":
            call = _subscribe(users, hostile, None)
            await call.read()
        else:
            call = _subscribe(users, hostile, None)
            await asyncio.sleep(random.uniform(0, 0.02))
        call.cancel()

    async with hostile.attack(f"SubscribeUsers cancelled {phase}", ITERATIONS), _writes_flowing(hostile):
        await _repeat(hostile, attempt)


@pytest.mark.parametrize("phase", ["mid-replay", "while idle live", "mid-bidi", "mid client-stream"])
async def test_deadlines_expiring_at_every_phase(hostile: HostileServer, phase: str) -> None:
    async def attempt(users: UserServiceAsyncStub, n: int) -> None:
        timeout = random.uniform(0.001, 0.05)
        if phase == "mid-replay":
            async for _ in _subscribe(users, hostile, 0, timeout=timeout):
                pass
        elif phase == "while idle live":
            async for _ in _subscribe(users, hostile, None, timeout=timeout):
                pass
        elif phase == "mid-bidi":
            lookups = users.LookupUsers(metadata=hostile.metadata("reader"), timeout=timeout)
            for user_id in hostile.seeded_ids[: 1 + n % 3]:
                await lookups.write(_get(user_id))
                await lookups.read()
            await lookups.read()  # never half-closes: the deadline ends it
        else:
            batch = users.BatchCreateUsers(metadata=hostile.metadata("writer"), timeout=timeout)
            await batch.write(_new_user())
            await batch  # never half-closes either

    async with hostile.attack(f"deadline expiring {phase}", ITERATIONS):
        await _repeat(hostile, attempt)


@pytest.mark.parametrize(
    "phase", ["before the first message", "after 1-3 answers", "after half-close", "with a bad id next"]
)
async def test_lookups_cancelling_at_every_phase(hostile: HostileServer, phase: str) -> None:
    async def attempt(users: UserServiceAsyncStub, n: int) -> None:
        call = users.LookupUsers(metadata=hostile.metadata("reader"))
        await call.wait_for_connection()
        if phase == "after 1-3 answers":
            for user_id in hostile.seeded_ids[: 1 + n % 3]:
                await call.write(_get(user_id))
                await call.read()
        elif phase == "after half-close":
            await call.write(_get(hostile.seeded_ids[n % len(hostile.seeded_ids)]))
            await call.done_writing()
        elif phase == "with a bad id next":
            await call.write(_get(hostile.seeded_ids[0]))
            await call.write(_get(-1))
        call.cancel()

    async with hostile.attack(f"LookupUsers cancelled {phase}", ITERATIONS):
        await _repeat(hostile, attempt)


@pytest.mark.parametrize("phase", ["mid client-stream", "after half-close"])
async def test_batch_creates_cancelling_at_every_phase(hostile: HostileServer, phase: str) -> None:
    async def attempt(users: UserServiceAsyncStub, n: int) -> None:
        call = users.BatchCreateUsers(metadata=hostile.metadata("writer"))
        for _ in range(1 + n % 3):
            await call.write(_new_user())
        if phase == "after half-close":
            await call.done_writing()
        call.cancel()

    async with hostile.attack(f"BatchCreateUsers cancelled {phase}", ITERATIONS):
        await _repeat(hostile, attempt)


@pytest.mark.parametrize("method", ["GetUser", "ListUsers", "CreateUser"])
async def test_unary_calls_cancelled_in_flight(hostile: HostileServer, method: str) -> None:
    async def attempt(users: UserServiceAsyncStub, n: int) -> None:
        metadata = hostile.metadata()
        if method == "GetUser":
            call: Any = users.GetUser(
                _get(hostile.seeded_ids[n % len(hostile.seeded_ids)]), metadata=metadata
            )
        elif method == "ListUsers":
            call = users.ListUsers(user_pb2.ListUsersRequest(page_size=100), metadata=metadata)
        else:
            call = users.CreateUser(_new_user(), metadata=metadata)
        await asyncio.sleep(random.uniform(0, 0.005))
        call.cancel()

    async with hostile.attack(f"{method} cancelled in flight", ITERATIONS):
        await _repeat(hostile, attempt)
