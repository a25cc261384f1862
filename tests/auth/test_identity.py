"""The caller's identity reaches spans and logs; tokens and secrets never do; streams end
when the token that opened them expires."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import grpc
import jwt
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devkit.dev_credentials import DevCredentials
from tests.auth.conftest import Login
from tests.conftest import drain
from user_service.client import bearer
from user_service.gen.auth.v1 import auth_pb2
from user_service.gen.user.v1 import user_pb2
from user_service.telemetry.logging import ACCESS_LOGGER

if TYPE_CHECKING:
    from user_service.gen.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub


async def test_the_caller_is_on_the_span_and_the_access_line(
    users: UserServiceAsyncStub, login: Login, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    await users.ListUsers(user_pb2.ListUsersRequest(), metadata=bearer(await login("reader")))
    span = next(s for s in spans.get_finished_spans() if s.name == "/user.v1.UserService/ListUsers")
    assert span.attributes is not None
    assert span.attributes["enduser.id"] == "dev-reader"
    line = next(r for r in caplog.records if r.name == ACCESS_LOGGER and "ListUsers" in r.getMessage())
    assert line.__dict__["enduser_id"] == "dev-reader"


async def test_tokens_and_secrets_appear_in_no_span_and_no_log(
    auth: AuthServiceAsyncStub,
    users: UserServiceAsyncStub,
    credentials: DevCredentials,
    spans: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client_id, secret = credentials.secrets["admin"]
    token = (await auth.Login(auth_pb2.LoginRequest(client_id=client_id, client_secret=secret))).access_token
    await users.ListUsers(user_pb2.ListUsersRequest(), metadata=bearer(token))
    with pytest.raises(grpc.aio.AioRpcError):
        await auth.Login(auth_pb2.LoginRequest(client_id=client_id, client_secret=secret + "-wrong"))
    recorded = " ".join(str(span.to_json()) for span in spans.get_finished_spans())
    recorded += " ".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    for sensitive in (secret, token, token.split(".")[2]):
        assert sensitive not in recorded


def _token_expired_seconds_ago(credentials: DevCredentials, seconds: int) -> str:
    """A reader token whose ``exp`` lies ``seconds`` in the past (the server allows 30 s of leeway)."""
    now = int(time.time())
    claims = {"iss": "user-service", "aud": "user-service", "sub": "brief", "iat": now - 600}
    return jwt.encode(
        claims | {"exp": now - seconds, "roles": ["reader"]},
        credentials.jwt_secret_file.read_text().strip().encode(),
    )


async def test_a_subscription_ends_when_its_token_expires_leeway_included(
    users: UserServiceAsyncStub, credentials: DevCredentials
) -> None:
    """Expired 28 s ago, inside the 30 s leeway: accepted like a unary call, ended 2 s later."""
    token = _token_expired_seconds_ago(credentials, 28)
    started = time.monotonic()
    stream = users.SubscribeUsers(
        user_pb2.SubscribeUsersRequest(since_event_id=0), metadata=bearer(token), timeout=20
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await drain(stream)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "since_event_id=0" in (caught.value.details() or "")
    assert 1 < time.monotonic() - started < 10


async def test_every_stream_kind_ends_when_its_token_expires(
    users: UserServiceAsyncStub, credentials: DevCredentials
) -> None:
    """A bidi stream that sits idle is cut at expiry too, not only on its next message."""
    token = _token_expired_seconds_ago(credentials, 29)
    lookups = users.LookupUsers(metadata=bearer(token), timeout=20)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await lookups.read()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in (caught.value.details() or "")


async def test_a_token_inside_the_leeway_is_accepted_by_unary_calls(
    users: UserServiceAsyncStub, credentials: DevCredentials
) -> None:
    token = _token_expired_seconds_ago(credentials, 20)
    response = await users.ListUsers(user_pb2.ListUsersRequest(), metadata=bearer(token))
    assert list(response.users) == []
