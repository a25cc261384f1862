"""Login, the JWT attack matrix (each with its exact status) and role checks, over real calls."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devkit.dev_credentials import DevCredentials
from tests.auth.conftest import Login
from tests.conftest import StartServer, drain
from user_service.auth.tokens import InvalidTokenError, TokenKeys, TokenService
from user_service.client import bearer
from user_service.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

if TYPE_CHECKING:
    from user_service.gen.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": "user-service", "aud": "user-service", "sub": "mallory", "iat": now, "exp": now + 300}
    claims["roles"] = ["admin"]
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hmac_token(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 JWT built by hand, with any bytes as the HMAC key."""
    signing_input = (
        f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _forge(credentials: DevCredentials, **overrides: Any) -> str:
    """A token signed with the server's real secret, with chosen claims."""
    return jwt.encode(_claims(**overrides), credentials.jwt_secret_file.read_text().strip().encode(), "HS256")


async def _code(users: UserServiceAsyncStub, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    try:
        await users.ListUsers(user_pb2.ListUsersRequest(), metadata=metadata)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


class TestLogin:
    async def test_valid_credentials_get_a_short_lived_token_with_the_clients_roles(
        self, auth: AuthServiceAsyncStub, credentials: DevCredentials
    ) -> None:
        client_id, secret = credentials.secrets["writer"]
        response = await auth.Login(auth_pb2.LoginRequest(client_id=client_id, client_secret=secret))
        assert (response.token_type, list(response.roles)) == ("Bearer", ["writer"])
        lifetime = response.expire_time.ToDatetime().timestamp() - time.time()
        assert 800 < lifetime <= 900
        claims = jwt.decode(response.access_token, options={"verify_signature": False})
        assert (claims["sub"], claims["iss"], claims["aud"]) == (client_id, "user-service", "user-service")

    @pytest.mark.parametrize("who", ["wrong secret", "unknown client"])
    async def test_bad_credentials_are_unauthenticated_alike(
        self, auth: AuthServiceAsyncStub, credentials: DevCredentials, who: str
    ) -> None:
        client_id, secret = credentials.secrets["admin"]
        request = (
            auth_pb2.LoginRequest(client_id=client_id, client_secret=secret + "x")
            if who == "wrong secret"
            else auth_pb2.LoginRequest(client_id="nobody", client_secret=secret)
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await auth.Login(request)
        assert caught.value.code() == UNAUTHENTICATED
        assert caught.value.details() == "invalid client credentials"
        assert secret not in str(caught.value.debug_error_string())

    async def test_empty_fields_are_invalid_argument(self, auth: AuthServiceAsyncStub) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await auth.Login(auth_pb2.LoginRequest())
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "client_id" in (caught.value.details() or "")


class TestAttackMatrix:
    async def test_a_valid_token_is_accepted(self, users: UserServiceAsyncStub, login: Login) -> None:
        assert await _code(users, bearer(await login("reader"))) == grpc.StatusCode.OK

    async def test_no_token(self, users: UserServiceAsyncStub) -> None:
        assert await _code(users, ()) == UNAUTHENTICATED

    async def test_wrong_scheme(self, users: UserServiceAsyncStub, login: Login) -> None:
        token = await login("reader")
        assert await _code(users, (("authorization", f"Basic {token}"),)) == UNAUTHENTICATED

    async def test_malformed(self, users: UserServiceAsyncStub) -> None:
        assert await _code(users, bearer("not.a.jwt")) == UNAUTHENTICATED

    async def test_alg_none(self, users: UserServiceAsyncStub) -> None:
        header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
        payload = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=")
        assert await _code(users, bearer(f"{header.decode()}.{payload.decode()}.")) == UNAUTHENTICATED

    async def test_expired(self, users: UserServiceAsyncStub, credentials: DevCredentials) -> None:
        old = int(time.time()) - 3600
        assert await _code(users, bearer(_forge(credentials, iat=old, exp=old + 60))) == UNAUTHENTICATED

    async def test_not_before_in_the_future(
        self, users: UserServiceAsyncStub, credentials: DevCredentials
    ) -> None:
        token = _forge(credentials, nbf=int(time.time()) + 3600)
        assert await _code(users, bearer(token)) == UNAUTHENTICATED

    async def test_wrong_audience(self, users: UserServiceAsyncStub, credentials: DevCredentials) -> None:
        assert await _code(users, bearer(_forge(credentials, aud="billing"))) == UNAUTHENTICATED

    async def test_wrong_issuer(self, users: UserServiceAsyncStub, credentials: DevCredentials) -> None:
        assert await _code(users, bearer(_forge(credentials, iss="evil"))) == UNAUTHENTICATED

    @pytest.mark.parametrize("claim", ["exp", "iat", "sub", "iss", "aud"])
    async def test_missing_required_claim(
        self, users: UserServiceAsyncStub, credentials: DevCredentials, claim: str
    ) -> None:
        assert await _code(users, bearer(_forge(credentials, **{claim: None}))) == UNAUTHENTICATED

    async def test_tampered_payload(self, users: UserServiceAsyncStub, login: Login) -> None:
        header, _, signature = (await login("reader")).split(".")
        payload = jwt.decode(await login("reader"), options={"verify_signature": False}) | {
            "roles": ["admin"]
        }
        forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        assert await _code(users, bearer(f"{header}.{forged}.{signature}")) == UNAUTHENTICATED

    async def test_wrong_signature(self, users: UserServiceAsyncStub) -> None:
        token = jwt.encode(_claims(), b"another-secret-of-at-least-32-bytes!!", "HS256")
        assert await _code(users, bearer(token)) == UNAUTHENTICATED

    @pytest.mark.parametrize("roles", [None, 5, "admin", {"admin": False}, ["admin", 1], ["root"]])
    async def test_a_malformed_roles_claim_is_unauthenticated(
        self, users: UserServiceAsyncStub, credentials: DevCredentials, roles: Any
    ) -> None:
        """A validly signed token (an identity provider's, say) is still checked claim by
        claim: ``{"admin": false}`` once granted admin, ``null`` and ``5`` were INTERNAL."""
        claims = _claims()
        claims["roles"] = roles
        token = jwt.encode(claims, credentials.jwt_secret_file.read_text().strip().encode(), "HS256")
        assert await _code(users, bearer(token)) == UNAUTHENTICATED

    async def test_reader_calling_delete_is_permission_denied(
        self, users: UserServiceAsyncStub, login: Login
    ) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await users.DeleteUser(user_pb2.DeleteUserRequest(id=1), metadata=bearer(await login("reader")))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    async def test_streaming_rpcs_need_a_token_too(self, users: UserServiceAsyncStub) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await drain(users.SubscribeUsers(user_pb2.SubscribeUsersRequest()))
        assert caught.value.code() == UNAUTHENTICATED


async def test_hs256_token_signed_with_the_rs256_public_key_is_rejected(
    start: StartServer, credentials: DevCredentials, tmp_path: Path
) -> None:
    """Key confusion: the server verifies RS256 only, so an HMAC over its public key fails."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "jwt-rs256.pem"
    key_file.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    server = await start(
        auth_enabled=True,
        jwt_algorithm="RS256",
        jwt_private_key_file=key_file,
        jwt_key_id="test-key",
        auth_clients_file=credentials.clients_file,
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        client_id, secret = credentials.secrets["reader"]
        login = await auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(client_id=client_id, client_secret=secret)
        )
        assert jwt.get_unverified_header(login.access_token)["kid"] == "test-key"
        assert await _code(users, bearer(login.access_token)) == grpc.StatusCode.OK
        confused = _hmac_token(_claims(), key=public_pem)  # PyJWT itself refuses to do this
        assert await _code(users, bearer(confused)) == UNAUTHENTICATED


async def test_roles_are_ordered(users: UserServiceAsyncStub, login: Login) -> None:
    writer, admin, reader = [bearer(await login(role)) for role in ("writer", "admin", "reader")]
    user = await create_user_as(users, writer)
    await users.GetUser(user_pb2.GetUserRequest(id=user.id), metadata=reader)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await users.CreateUser(
            user_pb2.CreateUserRequest(user=user_pb2.User(name="R", email="r@example.com")), metadata=reader
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await users.DeleteUser(user_pb2.DeleteUserRequest(id=user.id), metadata=admin)


async def create_user_as(users: UserServiceAsyncStub, metadata: tuple[tuple[str, str], ...]) -> user_pb2.User:
    request = user_pb2.CreateUserRequest(user=user_pb2.User(name="Ada", email="ada@example.com"))
    return (await users.CreateUser(request, metadata=metadata)).user


async def test_health_and_reflection_need_no_token(auth_channel: grpc.aio.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    response = await health_pb2_grpc.HealthStub(auth_channel).Check(health_pb2.HealthCheckRequest())
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_remembered_token_still_expires(credentials: DevCredentials) -> None:
    """Verified tokens are answered from memory, but never past their expiry (plus leeway),
    and a refused token is never remembered as accepted."""
    secret = credentials.jwt_secret_file.read_bytes().strip()
    service = TokenService(
        TokenKeys.hmac(secret, None),
        issuer="user-service",
        audience="user-service",
        ttl_seconds=60,
        leeway_seconds=0,
    )
    token, _ = service.issue("dev-reader", (), now=time.time() - 58)  # expires within 2 s
    assert (await service.authenticate(token)).subject == "dev-reader"
    assert (await service.authenticate(token)).subject == "dev-reader"  # from memory
    await asyncio.sleep(2.1)
    with pytest.raises(InvalidTokenError):
        await service.authenticate(token)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for _ in range(2):
        with pytest.raises(InvalidTokenError):
            await service.authenticate(forged)
