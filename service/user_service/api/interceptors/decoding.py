"""Requests that do not parse are INVALID_ARGUMENT, not UNKNOWN.

grpc.aio deserialises a request before any handler code runs and reports a parse
failure (bad UTF-8 in a string field, a corrupt wire format) as UNKNOWN. This
interceptor takes deserialisation over: it receives raw bytes, parses them itself and
answers a malformed message with INVALID_ARGUMENT naming the method — for unary
requests and for every message of a request stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from user_service.api.call import Context
from user_service.api.interceptors.wrapping import (
    Handler,
    HandlerWrappingInterceptor,
    behavior_of,
    rewrap,
)
from user_service.api.methods import RpcMethod


class RequestDecodingInterceptor(HandlerWrappingInterceptor):
    def wrap(self, handler: Any, method: RpcMethod) -> Handler:
        if handler.request_deserializer is None:
            return handler  # type: ignore[no-any-return]
        decoder = _Decoder(handler.request_deserializer, method.path)
        behavior = behavior_of(handler)

        async def decoded(raw: Any, context: Context) -> Any:
            request = (
                decoder.each(raw, context) if method.client_streaming else await decoder.one(raw, context)
            )
            return await behavior(request, context)

        return rewrap(handler, decoded, raw_requests=True)


class _Decoder:
    def __init__(self, deserialize: Callable[[bytes], Any], method: str) -> None:
        self._deserialize = deserialize
        self._method = method

    async def one(self, raw: bytes, context: Context) -> Any:
        try:
            return self._deserialize(raw)
        except DecodeError as error:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"malformed request message for {self._method}: {error}"
            )

    async def each(self, raw_requests: AsyncIterable[bytes], context: Context) -> AsyncIterator[Any]:
        async for raw in raw_requests:
            yield await self.one(raw, context)
