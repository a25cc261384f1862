"""``serve --workers 2`` at production defaults: two processes share the port, both serve, the
change feed crosses between them, the port is refused to anyone else, a dead worker is
replaced and SIGTERM stops them all."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import grpc
import psutil
import pytest

from devkit.dev_credentials import DevCredentials, write_dev_credentials
from devkit.processes import CLI, ServerProcess
from scripts.stack.observe import eventually
from scripts.stack.probes import login
from tests.process.conftest import cli
from user_service.client import bearer
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

WORKERS = 2
# The kernel's SO_REUSEPORT hash, not a rule, decides which worker takes a connection: the test
# opens connections until every worker has one, up to this many (2 workers: a miss is 2^-63).
MAX_CONNECTIONS = 64


@pytest.fixture
def credentials(tmp_path: Path) -> DevCredentials:
    return write_dev_credentials(tmp_path / "credentials")


@pytest.fixture
def workers(database_url: str, credentials: DevCredentials) -> Iterator[ServerProcess]:
    server = ServerProcess(database_url, "--workers", str(WORKERS), env=credentials.server_env()).start()
    # SERVING on the shared port says one worker is up; each serves its own metrics once ready.
    for worker in range(WORKERS):
        assert eventually(partial(_metrics, server, worker), timeout=20), f"worker {worker} serves no metrics"
    yield server
    server.stop()


def _metrics(server: ServerProcess, worker: int) -> str | None:
    base = int(server.metrics_url.rpartition(":")[2].removesuffix("/metrics"))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{base + worker}/metrics", timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return None


def _handled(server: ServerProcess, worker: int, method: str) -> float:
    text = _metrics(server, worker)
    assert text is not None, f"worker {worker} serves no metrics"
    pattern = rf'^grpc_server_handled_total{{[^}}]*grpc_method="{method}"[^}}]*}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


def _workers_counted_more(server: ServerProcess, method: str, before: list[float]) -> list[int]:
    """The workers whose count of finished ``method`` calls is above ``before``."""
    return [worker for worker in range(WORKERS) if _handled(server, worker, method) > before[worker]]


def _channels_reaching_every_worker(
    server: ServerProcess, metadata: tuple[tuple[str, str], ...]
) -> list[grpc.Channel]:
    """Channels of one TCP connection each (a subchannel pool of their own), opened until every
    worker has taken at least one; each channel's worker is found from the worker's counters."""
    channels: list[grpc.Channel] = []
    reached: set[int] = set()
    while reached != set(range(WORKERS)):
        assert len(channels) < MAX_CONNECTIONS, (
            f"{MAX_CONNECTIONS} connections reached only workers {reached}"
        )
        channel = grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)])
        before = [_handled(server, worker, "ListUsers") for worker in range(WORKERS)]
        user_pb2_grpc.UserServiceStub(channel).ListUsers(
            user_pb2.ListUsersRequest(page_size=1), metadata=metadata, timeout=10
        )
        served = eventually(partial(_workers_counted_more, server, "ListUsers", before), timeout=10)
        assert served, "no worker counted the call"
        reached.update(served)
        channels.append(channel)
    return channels


def _worker_pids(server: ServerProcess) -> set[int]:
    assert server.process is not None
    return {child.pid for child in psutil.Process(server.process.pid).children()}


def test_both_workers_serve_and_a_subscriber_on_either_sees_every_write(
    workers: ServerProcess, credentials: DevCredentials
) -> None:
    metadata = bearer(login(workers.target, *credentials.secrets["admin"]))
    channels = _channels_reaching_every_worker(workers, metadata)
    received: list[list[int]] = [[] for _ in channels]

    def follow(channel: grpc.Channel, into: list[int]) -> None:
        stream = user_pb2_grpc.UserServiceStub(channel).SubscribeUsers(
            user_pb2.SubscribeUsersRequest(since_event_id=0), metadata=metadata, timeout=30
        )
        for event in stream:
            into.append(event.event_id)
            if len(into) == len(channels):
                stream.cancel()
                return

    try:
        followers = [
            threading.Thread(target=follow, args=(channel, into), daemon=True)
            for channel, into in zip(channels, received, strict=True)
        ]
        for follower in followers:
            follower.start()
        for index, channel in enumerate(channels):
            user_pb2_grpc.UserServiceStub(channel).CreateUser(
                user_pb2.CreateUserRequest(
                    user=user_pb2.User(name=f"U{index}", email=f"u{index}@example.com")
                ),
                metadata=metadata,
                timeout=10,
            )
        for follower in followers:
            follower.join(timeout=30)
    finally:
        for channel in channels:
            channel.close()
    expected = list(range(1, len(channels) + 1))
    assert all(ids == expected for ids in received), received
    # Every worker holds a channel that subscribed and wrote; a stream is counted when it ends,
    # after the client's cancel reached the worker.
    nothing = [0.0] * WORKERS
    assert _workers_counted_more(workers, "CreateUser", nothing) == list(range(WORKERS))
    streams_ended = partial(_workers_counted_more, workers, "SubscribeUsers", nothing)
    assert eventually(lambda: len(streams_ended()) == WORKERS, timeout=10), streams_ended()


def test_the_port_is_refused_to_another_server(workers: ServerProcess, database_url: str) -> None:
    port = workers.target.rpartition(":")[2]
    for extra in ((), ("--workers", "2")):
        second = subprocess.run(
            [CLI, "serve", "--port", port, "--metrics-port", "0", *extra],
            env={"USER_SERVICE_DATABASE_URL": database_url, "USER_SERVICE_AUTH_ENABLED": "false", "PATH": ""},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1, second.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr


def test_a_dead_worker_is_replaced_and_sigterm_stops_every_worker(
    workers: ServerProcess, credentials: DevCredentials
) -> None:
    token = login(workers.target, *credentials.secrets["admin"])
    before = _worker_pids(workers)
    assert len(before) == WORKERS
    psutil.Process(min(before)).send_signal(signal.SIGKILL)
    give_up = time.monotonic() + 20
    while len(_worker_pids(workers) - before) < 1:
        assert time.monotonic() < give_up, "the killed worker was not replaced"
        time.sleep(0.1)
    for index in range(4):
        cli(
            "create",
            "--name",
            f"U{index}",
            "--email",
            f"u{index}@example.com",
            "--token",
            token,
            "--target",
            workers.target,
        )
    survivors = _worker_pids(workers)
    workers.signal(signal.SIGTERM)
    assert workers.wait() == 0
    assert not [
        pid for pid in survivors if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    ]


def test_workers_stop_when_their_supervisor_is_killed(workers: ServerProcess) -> None:
    """SIGKILL (or the OOM killer) gives the supervisor no chance to pass anything on: the
    kernel does, and the workers drain and exit instead of holding the port forever."""
    pids = _worker_pids(workers)
    assert len(pids) == WORKERS
    workers.signal(signal.SIGKILL)
    workers.wait()
    give_up = time.monotonic() + 20
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids):
        assert time.monotonic() < give_up, "workers outlived their supervisor"
        time.sleep(0.1)
