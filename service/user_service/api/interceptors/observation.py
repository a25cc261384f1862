"""Observes every RPC — its span, status code, duration, messages in and out.

One wrapper serves every observer (server spans, Prometheus metrics, the access log):
the subtle part is written once — deciding the final status of each of the four RPC
kinds, including streams that end by cancellation, deadline or abort — and a call pays
for one wrapper, not one per concern.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import grpc

from user_service.api.interceptors.wrapping import (
    Context,
    Handler,
    HandlerWrappingInterceptor,
    behavior_of,
    same_kind,
)

GrpcType = Literal["unary", "client_stream", "server_stream", "bidi_stream"]


@dataclass(slots=True)
class RpcCall:
    """One RPC as observers see it. ``received``/``sent`` count messages."""

    service: str
    method: str
    type: GrpcType
    context: Context
    start: float
    received: int = 0
    sent: int = 0


class RpcObserver(Protocol):
    """Told when each RPC starts and finishes. Whatever ``started`` returns is handed back to
    ``finished``; observers finish in reverse order, so the first one started (tracing,
    whose span is current meanwhile) is the last to finish."""

    def started(self, call: RpcCall) -> Any: ...

    def finished(
        self, call: RpcCall, state: Any, code: grpc.StatusCode, duration: float, error: BaseException | None
    ) -> None: ...


class RpcObservationInterceptor(HandlerWrappingInterceptor):
    def __init__(self, observers: Sequence[RpcObserver]) -> None:
        super().__init__()
        self._observers = tuple(observers)

    def wrap(self, handler: Any, method: str) -> Handler:
        if not self._observers:
            return handler  # type: ignore[no-any-return]
        return _observed(handler, method, self._observers)


def grpc_type(handler: Any) -> GrpcType:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


def final_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    """The status the client receives, as best the server can tell."""
    if isinstance(error, asyncio.CancelledError | GeneratorExit):  # the caller went away
        remaining = context.time_remaining()
        expired = remaining is not None and remaining <= 0
        return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN  # what grpc.aio answers for an unhandled exception
    return grpc.StatusCode.OK


class _Observation:
    """Starts and finishes one RpcCall across all observers."""

    def __init__(self, service: str, method: str, kind: GrpcType, observers: tuple[RpcObserver, ...]) -> None:
        self._service, self._method, self._kind, self._observers = service, method, kind, observers

    def start(self, request: Any, context: Context, streaming: bool) -> tuple[RpcCall, list[Any], Any]:
        """The call, each observer's state, and the request (counted as it streams in)."""
        call = RpcCall(self._service, self._method, self._kind, context, time.perf_counter())
        states = [observer.started(call) for observer in self._observers]
        if streaming:
            return call, states, self.counted(request, call)
        call.received = 1
        return call, states, request

    def finish(self, call: RpcCall, states: list[Any], error: BaseException | None) -> None:
        code = final_code(call.context, error)
        duration = time.perf_counter() - call.start
        for observer, state in zip(reversed(self._observers), reversed(states), strict=True):
            observer.finished(call, state, code, duration, error)

    @staticmethod
    async def counted(requests: AsyncIterable[Any], call: RpcCall) -> AsyncIterator[Any]:
        async for request in requests:
            call.received += 1
            yield request


def _observed(handler: Any, path: str, observers: tuple[RpcObserver, ...]) -> Handler:
    service, _, method = path.lstrip("/").rpartition("/")
    observation = _Observation(service, method, grpc_type(handler), observers)
    behavior = behavior_of(handler)

    if not handler.response_streaming:

        async def unary_response(request: Any, context: Context) -> Any:
            call, states, request = observation.start(request, context, handler.request_streaming)
            error: BaseException | None = None
            try:
                response = await behavior(request, context)
                call.sent = 1
                return response
            except BaseException as raised:
                error = raised
                raise
            finally:
                observation.finish(call, states, error)

        return same_kind(handler, unary_response)

    async def streaming_response(request: Any, context: Context) -> AsyncIterator[Any]:
        call, states, request = observation.start(request, context, handler.request_streaming)
        error: BaseException | None = None
        try:
            async with aclosing(behavior(request, context)) as responses:
                async for response in responses:
                    call.sent += 1
                    yield response
        except BaseException as raised:
            error = raised
            raise
        finally:
            observation.finish(call, states, error)

    return same_kind(handler, streaming_response)
