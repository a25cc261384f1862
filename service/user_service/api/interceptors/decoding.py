"""Requests that do not parse are INVALID_ARGUMENT, not UNKNOWN.

grpc.aio deserialises a request before any handler code runs and reports a parse
failure (bad UTF-8 in a string field, a corrupt wire format) as UNKNOWN. This
interceptor takes deserialisation over: it receives raw bytes, parses them itself and
answers a malformed message with INVALID_ARGUMENT naming the method — for unary
requests and for every message of a request stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

Context = grpc.aio.ServicerContext[Any, Any]
Deserializer = Callable[[bytes], Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class RequestDecodingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        # Registered handlers never change, so each is wrapped once, not on every call.
        self._wrapped: dict[int, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        wrapped = self._wrapped.get(id(handler))
        if wrapped is None:
            decoder = _Decoder(handler.request_deserializer, handler_call_details.method)
            wrapped = self._wrapped[id(handler)] = _decoding_handler(handler, decoder)
        return wrapped


class _Decoder:
    def __init__(self, deserialize: Deserializer, method: str) -> None:
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


def _decoding_handler(handler: Any, decoder: _Decoder) -> Handler:
    """``handler`` is Any: types-grpcio types method handlers for the sync server only."""
    serializer = handler.response_serializer
    if handler.unary_unary:
        unary_unary = handler.unary_unary

        async def unary_unary_behavior(raw: bytes, context: Context) -> Any:
            return await unary_unary(await decoder.one(raw, context), context)

        return grpc.unary_unary_rpc_method_handler(unary_unary_behavior, response_serializer=serializer)
    if handler.unary_stream:
        unary_stream = handler.unary_stream

        async def unary_stream_behavior(raw: bytes, context: Context) -> AsyncIterator[Any]:
            async with aclosing(unary_stream(await decoder.one(raw, context), context)) as responses:
                async for response in responses:
                    yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream_behavior, response_serializer=serializer)
    if handler.stream_unary:
        stream_unary = handler.stream_unary

        async def stream_unary_behavior(raw_requests: AsyncIterable[bytes], context: Context) -> Any:
            return await stream_unary(decoder.each(raw_requests, context), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary_behavior, response_serializer=serializer)
    stream_stream = handler.stream_stream

    async def stream_stream_behavior(
        raw_requests: AsyncIterable[bytes], context: Context
    ) -> AsyncIterator[Any]:
        async with aclosing(stream_stream(decoder.each(raw_requests, context), context)) as responses:
            async for response in responses:
                yield response

    return grpc.stream_stream_rpc_method_handler(stream_stream_behavior, response_serializer=serializer)
