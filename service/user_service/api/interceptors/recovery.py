"""Any unexpected exception in a handler becomes INTERNAL with a generic message.

No stack trace, SQL or other internal detail reaches the client; the detail goes to the
log (with the trace id) and to the active span. Aborts, cancellations and deadlines pass
through untouched, and so does anything raised once the call's status is already sent
(the client went away mid-abort): there is nobody left to answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from user_service.api.call import Context
from user_service.api.interceptors.wrapping import (
    Handler,
    HandlerWrappingInterceptor,
    behavior_of,
    rewrap,
)
from user_service.api.methods import RpcMethod

log = logging.getLogger(__name__)
INTERNAL_MESSAGE = "internal error; the server logged the details"


class RecoveryInterceptor(HandlerWrappingInterceptor):
    def wrap(self, handler: Any, method: RpcMethod) -> Handler:
        behavior = behavior_of(handler)

        async def recovered(request: Any, context: Context) -> Any:
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except grpc.aio.InternalError as gone:
                raise asyncio.CancelledError(f"the call ended under {method.path}") from gone
            except Exception as error:
                if context.done():
                    raise
                await _internal(context, method.path, error)

        return rewrap(handler, recovered)


async def _internal(context: Context, method: str, error: Exception) -> None:
    log.error("unhandled %s in %s", type(error).__name__, method, exc_info=error)
    span = trace.get_current_span()
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
