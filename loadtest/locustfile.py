"""The load: a read-heavy CRUD mix, pagination walks, client and bidi streams, and
subscribers holding ``SubscribeUsers`` open while the writes happen.

    locust -f loadtest/locustfile.py            # or: make load / make load-ui

``CrudUser`` runs the mix in ``LOAD_MIX`` (relative weights), paced by
``LOAD_USER_RPS`` calls per second per user (``constant_throughput``): a generator that
runs flat out measures its own queueing, not the service. Readers ask for users that
exist (``loadtest.seed`` makes them); writers update and delete only what they created.
``Subscriber`` (``LOAD_SUBSCRIBERS`` per worker process) holds one live subscription and
reports, per event, the time from its commit to its receipt.

With ``LOAD_FLAGS_FILE``, the load follows the load generator's fault flags (``loadtest.flags``):
slow consumers among the subscribers, a traffic spike of the users.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import gevent
import grpc
from locust import constant, constant_throughput, events, task
from locust.env import Environment
from locust.runners import STATE_RUNNING, WorkerRunner

from loadtest import metrics
from loadtest.flags import NO_LOAD_FAULTS, LoadFaults, LoadFlags, TrafficSpike
from loadtest.grpc_user import GrpcStatusError, GrpcUser
from loadtest.settings import LoadSettings
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
    """The load flags (when LOAD_FLAGS_FILE names a file), this process's metrics; the process
    that decides the user count (the master, or the only one) follows the traffic spike flag."""
    if SETTINGS.flags_file is not None:
        _Process.flags = LoadFlags(SETTINGS.flags_file)
    metrics.attach(environment, _Process.flags)
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
    wait_time = constant_throughput(SETTINGS.user_rps)

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
        with self.measure("bidi_stream", "LookupUsers") as outcome:
            requests = (user_pb2.GetUserRequest(id=user_id) for user_id in ids)
            answers = self.connection.users.LookupUsers(
                requests, metadata=self.connection.tokens.metadata(), timeout=self.connection.timeout
            )
            outcome.messages = sum(1 for _ in answers)

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
        with self.measure("client_stream", "BatchCreateUsers") as outcome:
            requests = (_new_user() for _ in range(SETTINGS.batch_size))
            response = self.connection.users.BatchCreateUsers(
                requests, metadata=self.connection.tokens.metadata(), timeout=self.connection.timeout
            )
            outcome.messages = SETTINGS.batch_size
            self.created.extend(result.user.id for result in response.results if result.HasField("user"))


class Subscriber(GrpcUser):
    """Holds one live ``SubscribeUsers`` stream, read in its own greenlet.

    Rows it reports (``server_stream``): ``SubscribeUsers delivery`` — per event, commit to
    receipt; ``SubscribeUsers first event`` — open to first event; ``SubscribeUsers stream``
    — each stream's lifetime, its message count as the response length, and as a failure
    when the server ended it (cut off, shutdown, expiry: it is then resumed from the last
    event received, so nothing is missed).
    """

    # Taken out of the run's USERS: USERS=20 with 4 subscribers leaves 16 CRUD users.
    fixed_count = SETTINGS.subscribers
    abstract = SETTINGS.subscribers == 0  # fixed_count 0 would mean "spawn by weight"
    wait_time = constant(1)

    def on_start(self) -> None:
        super().on_start()
        self._stopping = False
        self._stream: Any = None
        self._reader = gevent.spawn(self._follow)

    def on_stop(self) -> None:
        """Cancels the stream (a greenlet blocked in grpc cannot simply be killed) and
        waits for the reader to report it."""
        self._stopping = True
        if self._stream is not None:
            self._stream.cancel()
        self._reader.join(timeout=5)

    @task
    def hold(self) -> None:
        """The work happens in the reader greenlet; the task only keeps the user alive."""

    def _follow(self) -> None:
        since: int | None = None
        while not self._stopping:
            since = self._one_stream(since)

    def _one_stream(self, since: int | None) -> int | None:
        request = user_pb2.SubscribeUsersRequest()
        if since is not None:
            request.since_event_id = since
        opened = time.perf_counter()
        received = 0
        error: Exception | None = None
        stream = self._stream = self.connection.streams.SubscribeUsers(
            request, metadata=self.connection.tokens.metadata(), timeout=STREAM_SECONDS
        )
        fire = self._fire  # per event: the generator's streaming hot path
        slow_one: bool | None = None  # drawn once per stream, when slow consumers are on
        try:
            for event in stream:
                slow = _Process.load_faults().slow_consumers
                if slow is not None:  # a slow consumer takes this long over each event
                    if slow_one is None:
                        slow_one = slow.is_slow()
                    if slow_one:
                        gevent.sleep(slow.delay_seconds)
                now = time.time()
                if received == 0:
                    self.report(
                        "server_stream", "SubscribeUsers first event", (time.perf_counter() - opened) * 1000
                    )
                received += 1
                committed = event.event_time.seconds + event.event_time.nanos / 1e9
                fire(  # type: ignore[no-untyped-call]
                    request_type="server_stream",
                    name="SubscribeUsers delivery",
                    response_time=max(0.0, now - committed) * 1000,
                    response_length=1,
                    exception=None,
                    context=None,
                )
                since = event.event_id
        except grpc.RpcError as failed:
            code = failed.code()
            planned_end = code == grpc.StatusCode.DEADLINE_EXCEEDED or self._stopping
            if not planned_end:
                error = GrpcStatusError(code)
                if code == grpc.StatusCode.UNAUTHENTICATED:
                    self.connection.tokens.expire()
                gevent.sleep(0.5)  # then resume from `since`: nothing is missed
        finally:
            self.report(
                "server_stream",
                "SubscribeUsers stream",
                (time.perf_counter() - opened) * 1000,
                received,
                error,
            )
        return since
