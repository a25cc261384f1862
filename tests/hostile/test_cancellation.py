"""Clients that cancel, or let their deadline expire, at every phase of every RPC kind.

The first of these crashed the server (SIGSEGV): cancel ``SubscribeUsers`` after one
replayed event and the access log read the freed call in a ``finally`` that ran later.

A cancellation the server never saw tests nothing, so each attempt reaches its phase on
the server before it cancels: by a message the server sent, by the response headers of a
registered subscription, or by ``Arrival`` — waiting until the server's own
``grpc_server_started_total`` shows the whole batch of calls started.
"""

from __future__ import annotations

import asyncio
import random
import time
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


class Arrival:
    """Waits until the server has started every call of the current batch."""

    def __init__(self, hostile: HostileServer, method: str) -> None:
        self._hostile, self._method = hostile, method
        self._expected = 0.0
        self._lock = asyncio.Lock()
        self.seen_before = hostile.started(method)

    def expect(self, calls: int) -> None:
        self._expected += calls

    async def all_started(self, within: float = 10.0) -> None:
        async with self._lock:  # one poller for the whole batch
            give_up = time.monotonic() + within
            while await asyncio.to_thread(self.seen) < self._expected:
                assert time.monotonic() < give_up, f"{self._method} calls never reached the server"
                await asyncio.sleep(0.005)

    def seen(self) -> float:
        return self._hostile.started(self._method) - self.seen_before


Attempt = Callable[["UserServiceAsyncStub", int, Arrival], Awaitable[None]]


async def _repeat(hostile: HostileServer, method: str, attempt: Attempt, *, racing: bool = False) -> None:
    """Attempts, ``CONCURRENCY`` at a time on one connection, until ``ITERATIONS`` of them
    have reached the server. An attempt may end in any status: the server's survival is
    what is under test. ``racing``: the attempt races the call itself (a deadline, a cancel
    timed against a short call), so some never arrive; more attempts are made, at most ten
    times as many — on a loaded machine many more are lost on the way than on an idle one."""
    arrival = Arrival(hostile, method)
    budget = ITERATIONS * (10 if racing else 1)
    async with hostile.channel() as channel:
        await channel.channel_ready()  # connected: a call's first bytes leave at once
        users = user_pb2_grpc.UserServiceStub(channel)
        made = 0
        while made < budget and await asyncio.to_thread(arrival.seen) < ITERATIONS:
            arrival.expect(CONCURRENCY)
            await asyncio.gather(*(_tolerant(attempt(users, made + n, arrival)) for n in range(CONCURRENCY)))
            made += CONCURRENCY
    reached = await asyncio.to_thread(arrival.seen)
    assert reached >= ITERATIONS, f"only {reached:.0f} of {made} {method} calls reached the server"


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
    request = user_pb2.SubscribeUsersRequest()
    if since is not None:
        request.since_event_id = since
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
    async def attempt(users: UserServiceAsyncStub, n: int, arrival: Arrival) -> None:
        if phase == "mid-replay":
            call = _subscribe(users, hostile, 0)
            for _ in range(1 + n % 5):
                await call.read()
        elif phase == "during the live tail":
            call = _subscribe(users, hostile, None)
            await call.read()
        else:
            call = _subscribe(users, hostile, 0 if phase == "before the first message" else None)
            await call.initial_metadata()  # registered; replay has not sent anything yet
            if phase == "while idle":
                await asyncio.sleep(random.uniform(0, 0.02))
        call.cancel()

    async with hostile.attack(f"SubscribeUsers cancelled {phase}", ITERATIONS), _writes_flowing(hostile):
        await _repeat(hostile, "SubscribeUsers", attempt)


@pytest.mark.parametrize("phase", ["mid-replay", "while idle live", "mid-bidi", "mid client-stream"])
async def test_deadlines_expiring_at_every_phase(hostile: HostileServer, phase: str) -> None:
    async def attempt(users: UserServiceAsyncStub, n: int, arrival: Arrival) -> None:
        timeout = random.uniform(0.05, 0.15)
        if phase == "mid-replay":
            call = _subscribe(users, hostile, 0, timeout=timeout)
            while True:
                await call.read()
        elif phase == "while idle live":
            call = _subscribe(users, hostile, None, timeout=timeout)
            await call.initial_metadata()
            await call.read()
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

    method = {"mid-bidi": "LookupUsers", "mid client-stream": "BatchCreateUsers"}.get(phase, "SubscribeUsers")
    async with hostile.attack(f"deadline expiring {phase}", ITERATIONS):
        # A deadline can expire while a busy server still queues the call.
        await _repeat(hostile, method, attempt, racing=True)


@pytest.mark.parametrize(
    "phase", ["before the first message", "after 1-3 answers", "after half-close", "with a bad id next"]
)
async def test_lookups_cancelling_at_every_phase(hostile: HostileServer, phase: str) -> None:
    async def attempt(users: UserServiceAsyncStub, n: int, arrival: Arrival) -> None:
        call = users.LookupUsers(metadata=hostile.metadata("reader"))
        if phase == "after 1-3 answers":
            for user_id in hostile.seeded_ids[: 1 + n % 3]:
                await call.write(_get(user_id))
                await call.read()
        else:
            if phase == "after half-close":
                await call.write(_get(hostile.seeded_ids[n % len(hostile.seeded_ids)]))
                await call.done_writing()
            elif phase == "with a bad id next":
                await call.write(_get(hostile.seeded_ids[0]))
                await call.write(_get(-1))
            await arrival.all_started()
        call.cancel()

    async with hostile.attack(f"LookupUsers cancelled {phase}", ITERATIONS):
        await _repeat(hostile, "LookupUsers", attempt)


@pytest.mark.parametrize("phase", ["mid client-stream", "after half-close"])
async def test_batch_creates_cancelling_at_every_phase(hostile: HostileServer, phase: str) -> None:
    async def attempt(users: UserServiceAsyncStub, n: int, arrival: Arrival) -> None:
        call = users.BatchCreateUsers(metadata=hostile.metadata("writer"))
        for _ in range(1 + n % 3):
            await call.write(_new_user())
        if phase == "after half-close":
            await call.done_writing()
        await arrival.all_started()
        call.cancel()

    async with hostile.attack(f"BatchCreateUsers cancelled {phase}", ITERATIONS):
        await _repeat(hostile, "BatchCreateUsers", attempt)


@pytest.mark.parametrize("method", ["GetUser", "ListUsers", "CreateUser"])
async def test_unary_calls_cancelled_in_flight(hostile: HostileServer, method: str) -> None:
    async def attempt(users: UserServiceAsyncStub, n: int, arrival: Arrival) -> None:
        metadata = hostile.metadata()
        if method == "GetUser":
            user_id = hostile.seeded_ids[n % len(hostile.seeded_ids)]
            call: Any = users.GetUser(_get(user_id), metadata=metadata)
        elif method == "ListUsers":
            call = users.ListUsers(user_pb2.ListUsersRequest(page_size=1000), metadata=metadata)
        else:
            call = users.CreateUser(_new_user(), metadata=metadata)
        # 20 calls at once reach the handler within ~3-40 ms here: some are cancelled
        # before, some while, some after the server runs them.
        await asyncio.sleep(random.uniform(0, 0.04))
        call.cancel()

    async with hostile.attack(f"{method} cancelled in flight", ITERATIONS):
        await _repeat(hostile, method, attempt, racing=True)
