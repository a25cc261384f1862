"""What every handler-wrapping interceptor shares: a cache and a same-kind handler factory.

grpc.aio asks each interceptor for the method handler on every call; registered handlers
never change, so each is wrapped once and the wrapper reused.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class HandlerWrappingInterceptor(grpc.aio.ServerInterceptor, ABC):
    def __init__(self) -> None:
        self._wrapped: dict[int, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        wrapped = self._wrapped.get(id(handler))
        if wrapped is None:
            wrapped = self._wrapped[id(handler)] = self.wrap(handler, handler_call_details.method)
        return wrapped

    @abstractmethod
    def wrap(self, handler: Any, method: str) -> Handler:
        """``handler`` is Any: types-grpcio types method handlers for the sync server only."""


def behavior_of(handler: Any) -> Any:
    return handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream


def same_kind(handler: Any, behavior: Any, *, raw_requests: bool = False) -> Handler:
    """A handler of ``handler``'s kind running ``behavior``; ``raw_requests`` hands it bytes."""
    factory = _FACTORIES[(handler.request_streaming, handler.response_streaming)]
    deserializer = None if raw_requests else handler.request_deserializer
    wrapped: Handler = factory(
        behavior, request_deserializer=deserializer, response_serializer=handler.response_serializer
    )
    return wrapped
