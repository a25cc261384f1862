"""The load: a read-heavy CRUD mix, pagination walks, client and bidi streams, and
subscribers holding ``SubscribeUsers`` open while the writes happen.

    python -m loadtest -f loadtest/locustfile.py     # Locust, threads unpatched; or make load / load-ui

``CrudUser`` runs the mix in ``LOAD_MIX`` (relative weights), paced by
``LOAD_USER_RPS`` calls per second per user, each user at a phase of its own
(``loadtest.pacing``): a generator that runs flat out, or whose users call in step, measures
its own queueing, not the service. Readers ask for users that exist (``loadtest.seed`` makes
them); writers update and delete only what they created.
``Subscriber`` (``LOAD_SUBSCRIBERS`` per worker process) holds one live subscription and
reports, per event, the time from its commit to its receipt.

With ``LOAD_FLAGS_FILE``, the load follows the load generator's fault flags (``loadtest.flags``):
slow consumers among the subscribers, a traffic spike of the users.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import gevent
import grpc
from locust import constant, constant_throughput, events, task
from locust.env import Environment
from locust.runners import STATE_RUNNING, WorkerRunner

from loadtest import logs, messages, metrics
from loadtest.flags import NO_LOAD_FAULTS, LoadFaults, LoadFlags, TrafficSpike
from loadtest.grpc_user import GrpcStatusError, GrpcUser, Outcome
from loadtest.pacing import paced
from loadtest.settings import LoadSettings
from loadtest.tracing import Metadata
from user_service.gen.user.v1 import user_pb2

SETTINGS = LoadSettings()
STREAM_SECONDS = 60.0  # a held subscription's deadline; it is resumed where it stopped


class _Process:
    """What this process opens at ``init`` (after Locust's fork of ``--processes``)."""

    flags: LoadFlags | None = None

    @classmethod
    def load_faults(cls) -> LoadFaults:
        return cls.flags.current if cls.flags is not None else NO_LOAD_FAULTS


@events.init.add_listener  # type: ignore[untyped-decorator]
def _on_init(environment: Environment, **_: Any) -> None:
    """The load flags (when LOAD_FLAGS_FILE names a file), this process's metrics and message
    counts; the process that decides the user count (the master, or the only one) follows the
    traffic spike flag."""
    if SETTINGS.flags_file is not None:
        _Process.flags = LoadFlags(SETTINGS.flags_file)
    metrics.attach(environment, _Process.flags)
    messages.attach(environment)
    logs.attach()
    if _Process.flags is not None and not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(_traffic_spikes, environment, _Process.flags)


def _traffic_spikes(environment: Environment, flags: LoadFlags) -> None:
    """Every second: while a spike is on, the users the run had before it times its multiplier;
    when it goes off, the users it had before."""
    applied: TrafficSpike | None = None
    before = 0
    while True:
        gevent.sleep(1)
        runner, wanted = environment.runner, flags.current.traffic_spike
        if runner is None or runner.state != STATE_RUNNING or wanted == applied:
            continue
        if applied is None:
            before = runner.target_user_count
        users = round(before * wanted.multiplier) if wanted is not None else before
        runner.start(users, spawn_rate=float(max(users, 1)))
        applied = wanted


def _new_user() -> user_pb2.CreateUserRequest:
    tag = uuid.uuid4().hex[:16]
    return user_pb2.CreateUserRequest(
        user=user_pb2.User(name=f"Load {tag[:6]}", email=f"{tag}@load.example.com")
    )


class CrudUser(GrpcUser):
    # LOAD_PACING=locust: Locust's own constant_throughput, whose users call in step (kept for
    # `make bench-load`, which measures what that costs).
    wait_time = (
        constant_throughput(SETTINGS.user_rps) if SETTINGS.pacing == "locust" else paced(SETTINGS.user_rps)
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.created: list[int] = []  # ids this user may update and delete

    def _existing_id(self) -> int:
        return random.choice(self.connection.known_ids) if self.connection.known_ids else 1

    @task(SETTINGS.task_weights().get("get", 0))
    def get_user(self) -> None:
        request = user_pb2.GetUserRequest(id=self._existing_id())
        self.unary("GetUser", request)

    @task(SETTINGS.task_weights().get("list", 0))
    def list_users(self) -> None:
        request = user_pb2.ListUsersRequest(page_size=50)
        self.unary("ListUsers", request)

    @task(SETTINGS.task_weights().get("walk", 0))
    def walk_pages(self) -> None:
        """Follows ``next_page_token`` for a few pages: each page a request of its own."""
        request = user_pb2.ListUsersRequest(page_size=20)
        for _ in range(SETTINGS.walk_pages):
            page = self.unary("ListUsers", request, "ListUsers (walk)")
            if page is None or not page.next_page_token:
                return
            request.page_token = page.next_page_token

    @task(SETTINGS.task_weights().get("lookup", 0))
    def lookup_users(self) -> None:
        """Bidi: ``LOAD_LOOKUP_SIZE`` ids of existing users as one request stream, each
        answered in order (existing ids: the server never ends the stream early, so the
        client never writes into a finished one — grpc#36066)."""
        ids = [self._existing_id() for _ in range(SETTINGS.lookup_size)]
        users, timeout = self.connection.users, self.connection.timeout

        async def lookup(metadata: Metadata, outcome: Outcome) -> None:
            requests = [user_pb2.GetUserRequest(id=user_id) for user_id in ids]
            outcome.messages = 0
            async for answer in users.LookupUsers(iter(requests), metadata=metadata, timeout=timeout):
                outcome.messages += 1
                outcome.size += answer.ByteSize()

        self.stream("bidi_stream", "LookupUsers", lookup)

    @task(SETTINGS.task_weights().get("create", 0))
    def create_user(self) -> None:
        request = _new_user()
        response = self.unary("CreateUser", request)
        if response is not None:
            self.created.append(response.user.id)

    @task(SETTINGS.task_weights().get("update", 0))
    def update_user(self) -> None:
        if not self.created:
            return self.create_user()
        request = user_pb2.UpdateUserRequest(
            user=user_pb2.User(id=random.choice(self.created), name="Updated")
        )
        request.update_mask.paths.append("name")
        self.unary("UpdateUser", request)
        return None

    @task(SETTINGS.task_weights().get("delete", 0))
    def delete_user(self) -> None:
        if not self.created:
            return self.create_user()
        request = user_pb2.DeleteUserRequest(id=self.created.pop())
        self.unary("DeleteUser", request)
        return None

    @task(SETTINGS.task_weights().get("batch", 0))
    def batch_create(self) -> None:
        """Client stream: ``LOAD_BATCH_SIZE`` users in one call."""
        users, timeout, created = self.connection.users, self.connection.timeout, self.created

        async def batch(metadata: Metadata, outcome: Outcome) -> None:
            requests = [_new_user() for _ in range(SETTINGS.batch_size)]
            response = await users.BatchCreateUsers(iter(requests), metadata=metadata, timeout=timeout)
            outcome.messages, outcome.size = SETTINGS.batch_size, response.ByteSize()
            created.extend(result.user.id for result in response.results if result.HasField("user"))

        self.stream("client_stream", "BatchCreateUsers", batch)


class Subscriber(GrpcUser):
    """Holds one live ``SubscribeUsers`` stream, read by a task on the process's loop.

    Rows it reports (``server_stream``): ``SubscribeUsers delivery`` — per event, commit to
    receipt; ``SubscribeUsers first event`` — open to first event; ``SubscribeUsers stream`` —
    each stream's lifetime (its events as its messages, their bytes as its size), and as a
    failure when the server ended it (cut off, shutdown, expiry: it is then resumed from the
    last event received, so nothing is missed).
    """

    # Taken out of the run's USERS: USERS=20 with 4 subscribers leaves 16 CRUD users.
    fixed_count = SETTINGS.subscribers
    abstract = SETTINGS.subscribers == 0  # fixed_count 0 would mean "spawn by weight"
    wait_time = constant(1)

    def on_start(self) -> None:
        super().on_start()
        self._reader = self.connection.hub.start(self._follow())

    def on_stop(self) -> None:
        """Cancels the reader and waits for it to report its stream."""
        self._reader.cancel()
        self.connection.hub.wait(self._reader, timeout=5)

    @task
    def hold(self) -> None:
        """The work happens in the reader task; the task only keeps the user alive."""

    async def _follow(self) -> None:
        since: int | None = None
        while True:
            since = await self._one_stream(since)

    async def _one_stream(self, since: int | None) -> int | None:
        request = user_pb2.SubscribeUsersRequest()
        if since is not None:
            request.since_event_id = since
        opened = time.perf_counter()
        received = received_bytes = 0
        error: Exception | None = None
        stream = self.connection.streams.SubscribeUsers(
            request, metadata=await self.connection.tokens.metadata(), timeout=STREAM_SECONDS
        )
        fire = self._fire  # per event: the generator's streaming hot path
        slow_one: bool | None = None  # drawn once per stream, when slow consumers are on
        try:
            async for event in stream:
                now = time.time()
                slow = _Process.load_faults().slow_consumers
                if slow is not None:  # a slow consumer takes this long over each event
                    if slow_one is None:
                        slow_one = slow.is_slow()
                    if slow_one:
                        await asyncio.sleep(slow.delay_seconds)
                        now = time.time()
                size = event.ByteSize()
                if received == 0:
                    self.report(
                        "server_stream",
                        "SubscribeUsers first event",
                        (time.perf_counter() - opened) * 1000,
                        size,
                    )
                received += 1
                received_bytes += size
                committed = event.event_time.seconds + event.event_time.nanos / 1e9
                fire(  # type: ignore[no-untyped-call]
                    request_type="server_stream",
                    name="SubscribeUsers delivery",
                    response_time=max(0.0, now - committed) * 1000,
                    response_length=size,
                    exception=None,
                    context=None,
                )
                since = event.event_id
        except grpc.aio.AioRpcError as failed:
            code = failed.code()
            if code != grpc.StatusCode.DEADLINE_EXCEEDED:  # the planned end of a held stream
                error = GrpcStatusError(code)
                if code == grpc.StatusCode.UNAUTHENTICATED:
                    self.connection.tokens.expire()
                await asyncio.sleep(0.5)  # then resume from `since`: nothing is missed
        finally:  # also when cancelled (the user stopping): its stream ends, as planned
            self.report(
                "server_stream",
                "SubscribeUsers stream",
                (time.perf_counter() - opened) * 1000,
                received_bytes,
                received,
                error,
            )
        return since
