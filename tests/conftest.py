"""Shared fixtures: a real server on a loopback port, real channels, real tools."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devkit.otlp_receiver import OtlpReceiver
from devkit.postgres import PostgresCluster, server_bindir
from user_service.config import ServerSettings
from user_service.domain.ports import UserStore
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.listening import free_port
from user_service.server import SERVICE_NAME, RunningServer, start_server
from user_service.store.postgres import PostgresUserStore
from user_service.store.sqlite import SqliteUserStore
from user_service.telemetry.logging import LogWriter
from user_service.telemetry.setup import setup_telemetry

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub as Stub

StartServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A real OTLP/gRPC receiver that server processes export their spans to."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/users.db"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One real PostgreSQL server for the session, on a free loopback port."""
    bindir = server_bindir()
    if bindir is None:
        message = "PostgreSQL server binaries not found: apt-get install postgresql (or set PG_BINDIR)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    cluster = PostgresCluster(bindir, free_port()).start()
    try:
        yield cluster
    finally:
        cluster.stop()


OpenStore = Callable[[], Awaitable[UserStore]]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Opens a store on this test's database, once per backend; each call opens it again (a
    restart, or another process on the same database)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return lambda: PostgresUserStore.open(url)
    return lambda: SqliteUserStore.open(tmp_path / "nested" / "users.db")


_databases = itertools.count(1)


@pytest.fixture
async def postgres_url(postgres_cluster: PostgresCluster) -> AsyncIterator[str]:
    """A fresh, empty database of its own for each test (dropped afterwards)."""
    name = f"test_{os.getpid()}_{next(_databases)}"
    admin = await asyncpg.connect(postgres_cluster.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield postgres_cluster.database_url(name)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Every span the in-process servers of a test end, exported synchronously."""
    return InMemorySpanExporter()


@pytest.fixture
def log_records() -> InMemoryLogRecordExporter:
    """Every log record the in-process servers of a test export over OTLP (with a log writer)."""
    return InMemoryLogRecordExporter()


@pytest.fixture
async def start(
    database_url: str, spans: InMemorySpanExporter, log_records: InMemoryLogRecordExporter
) -> AsyncIterator[StartServer]:
    """Starts servers on free loopback ports; ``start(subscriber_buffer=4)`` overrides settings,
    ``start(log_writer=writer)`` exports that writer's records to ``log_records``."""
    running: list[RunningServer] = []

    async def _start(log_writer: LogWriter | None = None, **overrides: Any) -> RunningServer:
        settings = ServerSettings(
            **{
                "host": "127.0.0.1",
                "port": 0,
                "metrics_port": 0,
                "database_url": database_url,
                "grace_period": 1.0,
                "auth_enabled": False,  # tests/auth turn it on with generated credentials
                **overrides,
            }
        )
        telemetry = setup_telemetry(
            SERVICE_NAME, span_processor=SimpleSpanProcessor(spans), log_exporter=log_records
        )
        server = await start_server(settings, telemetry, log_writer)
        running.append(server)
        return server

    yield _start
    for server in running:
        await server.shutdown(grace=0)


@pytest.fixture
async def server(start: StartServer) -> RunningServer:
    return await start()


@pytest.fixture
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return user_pb2_grpc.UserServiceStub(channel)


async def drain(responses: AsyncIterable[Any]) -> list[Any]:
    """Reads a response stream to its end (or its error status)."""
    return [response async for response in responses]


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Waits (bounded) for a state the server reaches asynchronously, e.g. a released stream."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within
    while not condition():
        assert loop.time() < give_up, "condition not reached in time"
        await asyncio.sleep(0.01)


def require_tool(name: str) -> str:
    """Path of a tool built by `make tools`; in CI a missing tool fails instead of skipping."""
    path = shutil.which(name) or shutil.which(name, path=os.environ.get("TOOLS_DIR"))
    if path is None:
        message = f"{name} is not installed: run `make tools`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


async def create_user(stub: Stub, name: str = "Ada", email: str = "ada@example.com") -> user_pb2.User:
    response = await stub.CreateUser(user_pb2.CreateUserRequest(user=user_pb2.User(name=name, email=email)))
    return response.user
