"""TLS and mutual TLS: plaintext and foreign certificates are refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from devkit.dev_certs import DevCerts, write_dev_certs
from tests.conftest import StartServer
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.server import RunningServer


@pytest.fixture
def certs(tmp_path: Path) -> DevCerts:
    return write_dev_certs(tmp_path / "certs")


@pytest.fixture
def foreign_certs(tmp_path: Path) -> DevCerts:
    return write_dev_certs(tmp_path / "foreign", ca_name="someone else's CA")


async def _list(server: RunningServer, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    target = f"localhost:{server.port}"
    channel = (
        grpc.aio.secure_channel(target, credentials) if credentials else grpc.aio.insecure_channel(target)
    )
    async with channel:
        try:
            await user_pb2_grpc.UserServiceStub(channel).ListUsers(user_pb2.ListUsersRequest(), timeout=3)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def _tls(ca: DevCerts, client: DevCerts | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.ca_cert.read_bytes(),
        private_key=client.client_key.read_bytes() if client else None,
        certificate_chain=client.client_cert.read_bytes() if client else None,
    )


async def test_tls_serves_tls_clients_and_refuses_plaintext(start: StartServer, certs: DevCerts) -> None:
    server = await start(host="localhost", tls_cert_file=certs.server_cert, tls_key_file=certs.server_key)
    assert await _list(server, _tls(certs)) == grpc.StatusCode.OK
    assert await _list(server, None) == grpc.StatusCode.UNAVAILABLE


async def test_a_client_that_does_not_trust_the_server_ca_is_refused(
    start: StartServer, certs: DevCerts, foreign_certs: DevCerts
) -> None:
    server = await start(host="localhost", tls_cert_file=certs.server_cert, tls_key_file=certs.server_key)
    assert await _list(server, _tls(foreign_certs)) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_needs_a_client_certificate_from_the_trusted_ca(
    start: StartServer, certs: DevCerts, foreign_certs: DevCerts
) -> None:
    server = await start(
        host="localhost",
        tls_cert_file=certs.server_cert,
        tls_key_file=certs.server_key,
        tls_client_ca_file=certs.ca_cert,
    )
    assert await _list(server, _tls(certs, client=certs)) == grpc.StatusCode.OK
    assert await _list(server, _tls(certs)) == grpc.StatusCode.UNAVAILABLE, "no client certificate"
    assert await _list(server, _tls(certs, client=foreign_certs)) == grpc.StatusCode.UNAVAILABLE, "other CA"
