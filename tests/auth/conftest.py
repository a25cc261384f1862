"""A server with authentication on, and tokens for each role."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from devkit.dev_credentials import DevCredentials, write_dev_credentials
from tests.conftest import StartServer
from user_service.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from user_service.gen.user.v1 import user_pb2_grpc
from user_service.server import RunningServer

if TYPE_CHECKING:
    from user_service.gen.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub

Login = Callable[[str], Awaitable[str]]


@pytest.fixture
def credentials(tmp_path: Path) -> DevCredentials:
    return write_dev_credentials(tmp_path / "credentials")


@pytest.fixture
async def auth_server(start: StartServer, credentials: DevCredentials) -> RunningServer:
    return await start(
        auth_enabled=True,
        jwt_secret_file=credentials.jwt_secret_file,
        auth_clients_file=credentials.clients_file,
        access_log="all",  # the identity tests read the caller off successful calls' lines
    )


@pytest.fixture
async def auth_channel(auth_server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{auth_server.port}") as channel:
        yield channel


@pytest.fixture
def users(auth_channel: grpc.aio.Channel) -> UserServiceAsyncStub:
    return user_pb2_grpc.UserServiceStub(auth_channel)


@pytest.fixture
def auth(auth_channel: grpc.aio.Channel) -> AuthServiceAsyncStub:
    return auth_pb2_grpc.AuthServiceStub(auth_channel)


@pytest.fixture
def login(auth: AuthServiceAsyncStub, credentials: DevCredentials) -> Login:
    """Logs in as the dev client of a role; returns its access token."""

    async def _login(role: str) -> str:
        client_id, secret = credentials.secrets[role]
        response = await auth.Login(auth_pb2.LoginRequest(client_id=client_id, client_secret=secret))
        return response.access_token

    return _login
