"""Client-side load balancing over real replicas: three server processes at production defaults
on one database, one client channel with a multi-address target. Calls spread over all three
(per-replica counters), and a replica drained with SIGTERM stops receiving calls before it
stops serving — not one call fails."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devkit.dev_credentials import DevCredentials, write_dev_credentials
from devkit.processes import ServerProcess
from scripts.stack.probes import login
from tests.process.conftest import cli
from user_service.client import bearer, open_channel
from user_service.config import ClientSettings
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

REPLICAS = 3


@pytest.fixture
def credentials(tmp_path: Path) -> DevCredentials:
    return write_dev_credentials(tmp_path / "credentials")


@pytest.fixture
def replicas(database_url: str, credentials: DevCredentials) -> Iterator[list[ServerProcess]]:
    env = {**credentials.server_env(), "USER_SERVICE_DRAIN_DELAY": "2"}
    started = [ServerProcess(database_url, env=env).start() for _ in range(REPLICAS)]
    yield started
    for replica in started:
        replica.stop()


def _target(replicas: list[ServerProcess]) -> str:
    return "ipv4:" + ",".join(replica.target for replica in replicas)


def _get_user_calls(replicas: list[ServerProcess]) -> list[float]:
    return [replica.started("GetUser") for replica in replicas]


def test_calls_spread_over_every_replica_and_a_drained_one_loses_none(
    replicas: list[ServerProcess], credentials: DevCredentials
) -> None:
    token = login(replicas[0].target, *credentials.secrets["admin"])
    target = _target(replicas)
    created = json.loads(
        cli(
            "create", "--name", "Ada", "--email", "ada@example.com", "--token", token, "--target", target
        ).stdout
    )
    metadata = bearer(token)
    request = user_pb2.GetUserRequest(id=int(created["user"]["id"]))
    with open_channel(ClientSettings(target=target)) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        # Round robin uses the replicas whose connection is ready and whose health check passed:
        # call until each has answered once (bounded), so the spread below is not a start-up race.
        for _ in range(200):
            if all(_get_user_calls(replicas)):
                break
            stub.GetUser(request, metadata=metadata, timeout=5)
        before = _get_user_calls(replicas)
        assert all(before), f"a replica never took a call: {before}"
        for _ in range(90):
            stub.GetUser(request, metadata=metadata, timeout=5)
        spread = [after - earlier for after, earlier in zip(_get_user_calls(replicas), before, strict=True)]
        assert all(calls >= 15 for calls in spread), f"round robin over all three: {spread}"

        failures: list[grpc.StatusCode] = []
        calls = 0
        stop = threading.Event()

        def keep_calling() -> None:
            nonlocal calls
            while not stop.is_set():
                try:
                    stub.GetUser(request, metadata=metadata, timeout=5)
                except grpc.RpcError as error:
                    failures.append(error.code())
                calls += 1
                time.sleep(0.002)

        caller = threading.Thread(target=keep_calling, daemon=True)
        caller.start()
        time.sleep(0.5)
        drained = replicas[0]
        drained.signal(signal.SIGTERM)  # NOT_SERVING at once, serving for 2 s more, then stops
        time.sleep(0.3)
        at_not_serving = drained.started("GetUser")
        time.sleep(1.2)  # still inside the drain delay: the replica would serve, were it asked
        assert drained.started("GetUser") == at_not_serving, "a NOT_SERVING replica gets no new calls"
        assert drained.wait(timeout=20) == 0
        before = _get_user_calls(replicas[1:])
        time.sleep(1)
        stop.set()
        caller.join(timeout=10)
    assert failures == [], f"{len(failures)} of {calls} calls failed while a replica drained"
    after = _get_user_calls(replicas[1:])
    assert all(a > b for a, b in zip(after, before, strict=True)), "the others took over"


def test_the_cli_accepts_a_multi_address_target(
    replicas: list[ServerProcess], credentials: DevCredentials
) -> None:
    token = login(replicas[0].target, *credentials.secrets["reader"])
    listed = json.loads(cli("list", "--token", token, "--target", _target(replicas)).stdout)
    assert listed.get("users", []) == []
