"""Clients that hold on: never read what the server sends, never half-close what they send."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import grpc
import pytest

from tests.hostile.conftest import HostileServer
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

NON_READERS = 200
HOLDERS = 100
# The server's buffer (1,024 events) plus what a 64 KiB stream window absorbs, with room.
MAX_EVENTS_TO_CUT_OFF = 3_000


def _filler() -> user_pb2.CreateUserRequest:
    """A user with the longest name allowed: big events fill a stream window sooner."""
    email = f"{uuid.uuid4().hex}@example.com"
    return user_pb2.CreateUserRequest(user=user_pb2.User(name="F" * 100, email=email))


async def _create_events(hostile: HostileServer, count: int) -> None:
    async with hostile.channel() as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        requests = (_filler() for _ in range(count))
        await users.BatchCreateUsers(requests, metadata=hostile.metadata(), timeout=120)


async def _read_all(call: Any, event_ids: list[int]) -> None:
    async for event in call:
        event_ids.append(event.event_id)


async def test_live_subscribers_that_stop_reading_are_cut_off_with_a_resume_point(
    hostile: HostileServer,
) -> None:
    """A subscriber whose HTTP/2 window is full blocks the server's write; once it falls a
    whole buffer behind it is cut off (its slot freed at once), and when it reads again it
    gets what was sent, then RESOURCE_EXHAUSTED naming the id to resume from.

    The client turns off BDP probing, which would otherwise grow its windows to megabytes:
    a transport that keeps absorbing messages is, as far as any server can tell, reading.
    """
    cutoffs = 'user_service_subscriber_cutoffs_total{reason="too_slow"}'
    async with hostile.attack(f"{NON_READERS} live subscribers that never read", NON_READERS) as notes:
        cut_before = hostile.metric(cutoffs)
        subscribers_before = hostile.metric("user_service_subscribers")
        async with hostile.channel(("grpc.http2.bdp_probe", 0)) as channel:
            users = user_pb2_grpc.UserServiceStub(channel)
            calls = [
                # Split between two callers: one caller may hold at most 100 subscriptions.
                users.SubscribeUsers(user_pb2.SubscribeUsersRequest(), metadata=hostile.metadata(role))
                for role in ("reader", "writer")
                for _ in range(NON_READERS // 2)
            ]
            for _ in range(200):
                if hostile.metric("user_service_subscribers") >= subscribers_before + NON_READERS:
                    break
                await asyncio.sleep(0.05)
            written = 0
            while hostile.metric(cutoffs) < cut_before + NON_READERS:
                assert written < MAX_EVENTS_TO_CUT_OFF, f"not all cut off after {written} events"
                await _create_events(hostile, 250)
                written += 250
            notes.append(f"all cut off after <= {written} events")
            assert hostile.metric("user_service_subscribers") == subscribers_before
            delivered: list[int] = []
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await _read_all(calls[0], delivered)
            assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            resume = re.search(r"since_event_id=(\d+)", ended.value.details() or "")
            assert resume is not None, ended.value.details()
            assert int(resume.group(1)) == delivered[-1], "resume exactly after the last event received"


async def test_subscribers_that_never_read_then_disconnect(hostile: HostileServer) -> None:
    """Once crashed the server seconds later, when the garbage collector met their streams.

    Each round leaves the transport's buffers (~100 KiB a stream) with the allocator, which
    keeps them for the next round: the first round may raise RSS by up to 40 MiB, later
    rounds must not add to it beyond the allocator's noise (measured: 8 rounds stayed within
    90-97 MiB) — growth with every round would be a leak.
    """
    rounds = 3
    behaviour = f"{rounds} x {NON_READERS} replaying subscribers that never read, then leave"
    async with hostile.attack(behaviour, rounds * NON_READERS, rss_limit=40 * 2**20) as notes:
        after_round = []
        for _ in range(rounds):
            async with hostile.channel() as channel:
                users = user_pb2_grpc.UserServiceStub(channel)
                for role in ("reader", "writer"):
                    for _ in range(NON_READERS // 2):
                        users.SubscribeUsers(
                            user_pb2.SubscribeUsersRequest(since_event_id=0), metadata=hostile.metadata(role)
                        )
                await asyncio.sleep(1.0)
            await asyncio.sleep(1.0)  # let the server's garbage collector run over what they left
            after_round.append(hostile.process.resources().rss_bytes)
        growth = after_round[-1] - after_round[0]
        notes.append(
            f"RSS after rounds 1..{rounds}: " + ", ".join(f"{rss / 2**20:.0f}" for rss in after_round)
        )
        assert growth <= 12 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB after the first round: a leak"


async def test_streams_that_never_half_close(hostile: HostileServer) -> None:
    behaviour = f"{HOLDERS} bidi + {HOLDERS} client streams never half-closed"
    async with hostile.attack(behaviour, 2 * HOLDERS), hostile.channel() as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        lookups = [users.LookupUsers(metadata=hostile.metadata("reader")) for _ in range(HOLDERS)]
        batches = [users.BatchCreateUsers(metadata=hostile.metadata("writer")) for _ in range(HOLDERS)]
        for lookup in lookups:
            await lookup.write(user_pb2.GetUserRequest(id=hostile.seeded_ids[0]))
            await lookup.read()
        for batch in batches:
            user = user_pb2.User(name="Holder", email=f"{uuid.uuid4().hex}@example.com")
            await batch.write(user_pb2.CreateUserRequest(user=user))
        await asyncio.sleep(0.5)
        # The channel closes (before the attack's checks) with every stream still open.
