"""Observes every RPC — its span, status code, duration, messages in and out.

One wrapper serves every observer (server spans, Prometheus metrics, the access log):
the subtle part is written once — deciding the final status of each of the four RPC
kinds, including calls that end by cancellation, deadline or abort — and a call pays
for one wrapper, not one per concern.

Observers get an ``RpcCall`` (``api/call.py``) holding everything read from the context,
captured when the call starts; they never see the context itself (see ``wrapping.py`` for why).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any, cast

import grpc

from user_service.api.call import Context, MessageCount, RpcCall, RpcObserver, sent_messages
from user_service.api.interceptors.wrapping import Handler, HandlerWrappingInterceptor, behavior_of, rewrap
from user_service.api.methods import RpcMethod


class RpcObservationInterceptor(HandlerWrappingInterceptor):
    def __init__(self, observers: Sequence[RpcObserver]) -> None:
        super().__init__()
        self._observers = tuple(observers)

    def wrap(self, handler: Any, method: RpcMethod) -> Handler:
        if not self._observers:
            return handler  # type: ignore[no-any-return]
        observers = self._observers
        behavior = behavior_of(handler)

        async def observed(request: Any, context: Context) -> Any:
            call = RpcCall(
                method.service,
                method.name,
                method.type,
                context.peer(),
                cast(tuple[tuple[str, Any], ...], context.invocation_metadata() or ()),
                time.perf_counter(),
            )
            # Read now, while the call is certainly alive: used to tell a deadline from a cancel.
            remaining = context.time_remaining()
            deadline = None if remaining is None else time.monotonic() + remaining
            if method.server_streaming:
                call.messages = MessageCount()
                sent_messages.set(call.messages)
            if method.client_streaming:
                request = _counted(request, call)
            else:
                call.received = 1
            states = [observer.started(call) for observer in observers]
            error: BaseException | None = None
            try:
                response = await behavior(request, context)
                if not method.server_streaming:
                    call.messages = _ONE_SENT
                return response
            except BaseException as raised:
                error = raised
                raise
            finally:
                # Still inside the RPC's task: the status fields are the call's own.
                code = final_code(context, error, deadline)
                call.details = context.details() or ""
                duration = time.perf_counter() - call.start
                for observer, state in zip(reversed(observers), reversed(states), strict=True):
                    observer.finished(call, state, code, duration, error)

        return rewrap(handler, observed)


_ONE_SENT = MessageCount()
_ONE_SENT.sent = 1


def final_code(context: Context, error: BaseException | None, deadline: float | None) -> grpc.StatusCode:
    """The status the client receives, as best the server can tell."""
    if isinstance(error, asyncio.CancelledError):  # the caller went away
        expired = deadline is not None and time.monotonic() >= deadline
        return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN  # what grpc.aio answers for an unhandled exception
    return grpc.StatusCode.OK


async def _counted(requests: AsyncIterable[Any], call: RpcCall) -> AsyncIterator[Any]:
    async for request in requests:
        call.received += 1
        yield request
    # The end of a request stream looks the same whether the client half-closed or went
    # away (grpc reports a cancelled read as EOF). A cancellation is delivered to this task
    # right behind it: give it that moment, so a cancelled call is observed as CANCELLED
    # instead of finishing as if the client had half-closed.
    for _ in range(_CANCELLATION_SETTLE_YIELDS):
        await asyncio.sleep(0)


_CANCELLATION_SETTLE_YIELDS = 3
