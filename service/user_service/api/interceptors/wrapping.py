"""The one way handlers are wrapped: every layer sees ``await behavior(request, context)``.

grpc.aio runs a streaming-response handler in one of two styles: an async generator whose
messages grpc writes, or a coroutine that writes them itself (``context.write``). Wrapping
generators is where this service used to crash: when a client cancels, grpc's task is
cancelled *while it writes* — outside the generator — and the generator is left suspended
until the garbage collector finalises it, long after grpc released the call. Its
``finally`` blocks (observers, subscriptions) then ran against a freed call:
``context.peer()`` there was a SIGSEGV.

So the innermost adapter turns every generator handler into a coroutine that writes each
message itself, inside ``aclosing``. Every layer is then an ordinary coroutine around
``await behavior(request, context)`` — the same code for all four RPC kinds — and its
``try``/``finally`` runs in the RPC's own task, while the call is alive, whether the RPC
returns, raises, aborts or is cancelled. Handlers that already write (Health/Watch) pass
through as they are.

Rule for every layer: read what you need from the context when the call starts; after
the call has ended (outside the RPC's task) never touch it.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any, TypeAlias

import grpc

from user_service.api.call import Context, send
from user_service.api.methods import RPC_TABLE, RpcMethod

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Behavior: TypeAlias = Callable[[Any, Context], Awaitable[Any]]

_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class HandlerWrappingInterceptor(grpc.aio.ServerInterceptor, ABC):
    """Wraps each method's handler once (grpc asks for it on every call) and reuses it."""

    def __init__(self) -> None:
        # Keyed by the handler object itself: an id() could be reused by another handler.
        self._wrapped: dict[Any, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        wrapped = self._wrapped.get(handler)
        if wrapped is None:
            method = RPC_TABLE.get(handler_call_details.method)
            if method is None:  # fail closed; start_server checks that this cannot happen
                raise LookupError(f"{handler_call_details.method} is served but not in the RPC table")
            wrapped = self._wrapped[handler] = self.wrap(handler, method)
        return wrapped

    @abstractmethod
    def wrap(self, handler: Any, method: RpcMethod) -> Handler:
        """``handler`` is Any: types-grpcio types method handlers for the sync server only.
        Return ``handler`` itself when there is nothing to add; otherwise use ``rewrap``."""


class ComposedInterceptor(HandlerWrappingInterceptor):
    """Several layers registered with grpc as one interceptor. grpc runs every registered
    interceptor's ``intercept_service`` — a coroutine awaiting the next one — on every call;
    composed, the layers' wrappers are built once per method and each call pays for one."""

    def __init__(self, layers: Sequence[HandlerWrappingInterceptor]) -> None:
        super().__init__()
        self._layers = tuple(layers)  # outermost first, as they would be registered

    def wrap(self, handler: Any, method: RpcMethod) -> Handler:
        for layer in reversed(self._layers):  # the innermost wraps the servicer's handler first
            handler = layer.wrap(handler, method)
        return handler  # type: ignore[no-any-return]


def behavior_of(handler: Any) -> Behavior:
    """The handler's function as a coroutine ``(request, context) -> response | None``."""
    function = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    if inspect.isasyncgenfunction(function):
        return _writing(function)
    if not inspect.iscoroutinefunction(function):
        raise TypeError(f"{function!r} is not an async handler: this server runs grpc.aio handlers only")
    return function  # type: ignore[no-any-return]


def rewrap(handler: Any, behavior: Behavior, *, raw_requests: bool = False) -> Handler:
    """A handler of ``handler``'s kind running ``behavior``; ``raw_requests`` hands it bytes."""
    factory = _FACTORIES[(handler.request_streaming, handler.response_streaming)]
    deserializer = None if raw_requests else handler.request_deserializer
    wrapped: Handler = factory(
        behavior, request_deserializer=deserializer, response_serializer=handler.response_serializer
    )
    return wrapped


def _writing(generator_function: Callable[[Any, Context], AsyncGenerator[Any, None]]) -> Behavior:
    async def write_each(request: Any, context: Context) -> None:
        # aclosing: on cancellation the generator's finally blocks run now, in this task.
        async with aclosing(generator_function(request, context)) as responses:
            async for response in responses:
                await send(context, response)

    return write_each
