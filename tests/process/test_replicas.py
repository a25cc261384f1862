"""Two server processes on one database, at production defaults: a subscriber on one sees the
writes made on both, in event id order, with no gap and no duplicate — while either replica is
restarted and the subscriber resumes with ``since_event_id``. SQLite (a file shared by two
processes) and PostgreSQL alike."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devkit.dev_credentials import DevCredentials, write_dev_credentials
from devkit.processes import ServerProcess
from scripts.stack.probes import login
from user_service.client import bearer
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

WRITES = 30


@pytest.fixture(params=["sqlite", "postgres"])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path}/shared.db"


class Replicas:
    """Named server processes on one database; ``restart`` replaces one (new port)."""

    def __init__(self, database: str, credentials: DevCredentials) -> None:
        self._database, self.credentials = database, credentials
        self.processes: dict[str, ServerProcess] = {}

    def start(self, name: str) -> ServerProcess:
        self.processes[name] = ServerProcess(self._database, env=self.credentials.server_env()).start()
        return self.processes[name]

    def restart(self, name: str) -> None:
        self.processes[name].stop()
        self.start(name)

    def target(self, name: str) -> str:
        return self.processes[name].target

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


@pytest.fixture
def replicas(shared_database: str, tmp_path: Path) -> Iterator[Replicas]:
    started = Replicas(shared_database, write_dev_credentials(tmp_path / "credentials"))
    try:
        yield started
    finally:
        started.stop()


class ResumingSubscriber(threading.Thread):
    """Follows SubscribeUsers on replica ``a`` from the beginning; whenever the stream breaks
    (the replica restarts) it subscribes again with since_event_id = the last id it received."""

    def __init__(self, replicas: Replicas, token: str, expected: int) -> None:
        super().__init__(daemon=True)
        self._replicas, self._metadata, self._expected = (
            replicas,
            bearer(token),
            expected,
        )
        self.ids: list[int] = []
        self.resumes = 0

    def run(self) -> None:
        give_up = time.monotonic() + 60
        while len(self.ids) < self._expected and time.monotonic() < give_up:
            since = self.ids[-1] if self.ids else 0
            try:
                with grpc.insecure_channel(self._replicas.target("a")) as channel:
                    stream = user_pb2_grpc.UserServiceStub(channel).SubscribeUsers(
                        user_pb2.SubscribeUsersRequest(since_event_id=since),
                        metadata=self._metadata,
                        timeout=30,
                    )
                    for event in stream:
                        self.ids.append(event.event_id)
                        if len(self.ids) == self._expected:
                            stream.cancel()
                            return
            except grpc.RpcError:
                self.resumes += 1
                time.sleep(0.2)


def _create(replicas: Replicas, name: str, token: str, index: int) -> None:
    with grpc.insecure_channel(replicas.target(name)) as channel:
        user_pb2_grpc.UserServiceStub(channel).CreateUser(
            user_pb2.CreateUserRequest(user=user_pb2.User(name=f"U{index}", email=f"u{index}@example.com")),
            metadata=bearer(token),
            timeout=15,
        )


def test_a_subscriber_sees_every_replicas_writes_in_order_across_restarts(replicas: Replicas) -> None:
    replicas.start("a")
    replicas.start("b")
    token = login(replicas.target("a"), *replicas.credentials.secrets["admin"])
    subscriber = ResumingSubscriber(replicas, token, expected=WRITES)
    subscriber.start()
    for index in range(WRITES):
        if index == WRITES // 3:
            replicas.restart("b")  # the writing replica goes away and comes back
        if index == 2 * WRITES // 3:
            replicas.restart("a")  # the subscriber's replica: its stream ends, it resumes
        _create(replicas, "b" if index % 3 else "a", token, index)
    subscriber.join(timeout=60)
    assert subscriber.ids == list(range(1, WRITES + 1)), "every event once, in order"
    assert subscriber.resumes >= 1, "the subscriber's replica was restarted under it"
