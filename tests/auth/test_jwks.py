"""Tokens from an identity provider, verified with keys from its JWKS endpoint (a real HTTP
server on loopback): found by kid, fetched off the event loop, cached."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import StartServer
from user_service.client import bearer
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc


class IdentityProvider:
    """Serves ``/jwks.json`` with one RSA key and counts the fetches."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.document = json.dumps({"keys": [jwk | {"kid": "idp-1", "alg": "RS256", "use": "sig"}]}).encode()
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(provider.document)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"

    def token(self, kid: str = "idp-1", key: rsa.RSAPrivateKey | None = None) -> str:
        now = int(time.time())
        claims = {
            "iss": "user-service",
            "aud": "user-service",
            "sub": "idp-user",
            "iat": now,
            "exp": now + 300,
        }
        return jwt.encode(claims | {"roles": ["reader"]}, key or self.key, "RS256", headers={"kid": kid})


@pytest.fixture
def identity_provider() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    thread = threading.Thread(
        target=provider.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield provider
    provider.server.shutdown()
    provider.server.server_close()


async def test_tokens_are_verified_with_the_providers_keys(
    start: StartServer, identity_provider: IdentityProvider
) -> None:
    server = await start(auth_enabled=True, jwt_algorithm="RS256", jwt_jwks_url=identity_provider.url)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        for _ in range(3):
            await users.ListUsers(user_pb2.ListUsersRequest(), metadata=bearer(identity_provider.token()))
        assert identity_provider.fetches == 1, "keys are cached by kid"

        impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for token in (identity_provider.token(key=impostor), identity_provider.token(kid="made-up")):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await users.ListUsers(user_pb2.ListUsersRequest(), metadata=bearer(token))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert identity_provider.fetches <= 2, "unknown key ids cannot make the server refetch at will"
