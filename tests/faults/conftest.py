"""Shared by the fault tests: server processes at production defaults (auth, access log,
metrics, tracing to a real OTLP receiver) reading the test's copy of flags/demo.flagd.json,
which the tests edit as `make fault` does."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from devkit.dev_credentials import DevCredentials, write_dev_credentials
from devkit.otlp_receiver import OtlpReceiver
from devkit.processes import ServerProcess
from scripts import faults
from scripts.stack.observe import eventually
from scripts.stack.plan import REPO
from scripts.stack.probes import login
from user_service.client import Metadata, bearer
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

CALLS = 400
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def flags_file(tmp_path: Path) -> Path:
    copy = tmp_path / "flags" / "demo.flagd.json"
    copy.parent.mkdir()
    shutil.copy(REPO / "flags/demo.flagd.json", copy)
    return copy


@pytest.fixture
def credentials(tmp_path: Path) -> DevCredentials:
    return write_dev_credentials(tmp_path / "credentials")


@pytest.fixture
def start(
    database_url: str, credentials: DevCredentials, flags_file: Path, otlp_receiver: OtlpReceiver
) -> Iterator[Callable[[str], ServerProcess]]:
    started: list[ServerProcess] = []

    def _start(replica: str) -> ServerProcess:
        env = {
            **credentials.server_env(),
            "USER_SERVICE_FLAGS_FILE": str(flags_file),
            "USER_SERVICE_REPLICA": replica,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        started.append(ServerProcess(database_url, env=env).start())
        return started[-1]

    yield _start
    for server in started:
        server.stop()


def switch(flags_file: Path, name: str, variant: str | None, replica: str | None = None) -> None:
    """What `make fault` / `make fault-off` do, on the test's copy of the flag file."""
    if variant is None:
        faults.edit(flags_file, lambda document: faults.turn_off(document, name))
    else:
        faults.edit(flags_file, lambda document: faults.turn_on(document, name, variant, replica))


def in_effect(server: ServerProcess, flag: str, variant: str) -> bool:
    """Whether the server reports ``variant`` of ``flag`` in effect (its flag gauge)."""
    return server.sample("user_service_fault_flag", flag=flag, variant=variant) == 1


def wait_in_effect(server: ServerProcess, flag: str, variant: str) -> None:
    assert eventually(lambda: in_effect(server, flag, variant), timeout=10), f"{flag}={variant} not picked up"


def codes(
    server: ServerProcess, metadata: Metadata, method: str, calls: int = CALLS
) -> list[grpc.StatusCode]:
    """The status of each of ``calls`` GetUser (of a user it creates first) or ListUsers calls."""
    with grpc.insecure_channel(server.target) as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        call: Callable[[], object]
        if method == "GetUser":
            email = f"{secrets.token_hex(4)}@example.com"
            created = users.CreateUser(
                user_pb2.CreateUserRequest(user=user_pb2.User(name="Ada", email=email)),
                metadata=metadata,
                timeout=10,
            )
            request = user_pb2.GetUserRequest(id=created.user.id)
            call = partial(users.GetUser, request, metadata=metadata, timeout=10)
        else:
            call = partial(
                users.ListUsers, user_pb2.ListUsersRequest(page_size=1), metadata=metadata, timeout=10
            )
        found = []
        for _ in range(calls):
            try:
                call()
                found.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                found.append(error.code())
        return found


def admin(server: ServerProcess, credentials: DevCredentials) -> Metadata:
    return bearer(login(server.target, *credentials.secrets["admin"]))
