"""Bytes that are not a valid request message get INVALID_ARGUMENT on every RPC kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from tests.conftest import drain

BAD_UTF8_NAME = b"\x0a\x03\x12\x01\xff"  # CreateUserRequest{user{name: b"\xff"}}
CORRUPT = b"\xff\xff\xff"


def _raw(channel: grpc.aio.Channel, kind: str, method: str) -> Any:
    """A multi-callable of the given kind that sends and receives raw bytes."""
    path = f"/user.v1.UserService/{method}"
    return getattr(channel, kind)(path, request_serializer=None, response_deserializer=None)


async def _one(payload: bytes) -> AsyncIterator[bytes]:
    yield payload


@pytest.mark.parametrize("payload", [BAD_UTF8_NAME, CORRUPT])
async def test_unary(channel: grpc.aio.Channel, payload: bytes) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _raw(channel, "unary_unary", "CreateUser")(payload)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "CreateUser" in (caught.value.details() or "")


async def test_server_streaming(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await drain(_raw(channel, "unary_stream", "SubscribeUsers")(CORRUPT))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_client_streaming(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _raw(channel, "stream_unary", "BatchCreateUsers")(_one(BAD_UTF8_NAME))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_bidi_streaming(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await drain(_raw(channel, "stream_stream", "LookupUsers")(_one(CORRUPT)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
