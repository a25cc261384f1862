"""Requests that do not parse are INVALID_ARGUMENT, not UNKNOWN.

grpc.aio deserialises a request before any handler code runs and reports a parse
failure (bad UTF-8 in a string field, a corrupt wire format) as UNKNOWN. This
interceptor takes deserialisation over: it receives raw bytes, parses them itself and
answers a malformed message with INVALID_ARGUMENT naming the method — for unary
requests and for every message of a request stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from user_service.api.interceptors.wrapping import (
    Context,
    Handler,
    HandlerWrappingInterceptor,
    behavior_of,
    same_kind,
)


class RequestDecodingInterceptor(HandlerWrappingInterceptor):
    def wrap(self, handler: Any, method: str) -> Handler:
        if handler.request_deserializer is None:
            return handler  # type: ignore[no-any-return]
        decoder = _Decoder(handler.request_deserializer, method)
        behavior = behavior_of(handler)

        async def decoded(raw: Any, context: Context) -> Any:
            return (
                decoder.each(raw, context) if handler.request_streaming else await decoder.one(raw, context)
            )

        if not handler.response_streaming:

            async def unary_response(raw: Any, context: Context) -> Any:
                return await behavior(await decoded(raw, context), context)

            return same_kind(handler, unary_response, raw_requests=True)

        async def streaming_response(raw: Any, context: Context) -> AsyncIterator[Any]:
            async with aclosing(behavior(await decoded(raw, context), context)) as responses:
                async for response in responses:
                    yield response

        return same_kind(handler, streaming_response, raw_requests=True)


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
