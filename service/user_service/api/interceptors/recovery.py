"""Any unexpected exception in a handler becomes INTERNAL with a generic message.

No stack trace, SQL or other internal detail reaches the client; the detail goes to the
log (with the trace id) and to the active span. Aborts, cancellations and deadlines pass
through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from user_service.api.interceptors.wrapping import (
    Context,
    Handler,
    HandlerWrappingInterceptor,
    behavior_of,
    same_kind,
)

log = logging.getLogger(__name__)
INTERNAL_MESSAGE = "internal error; the server logged the details"


class RecoveryInterceptor(HandlerWrappingInterceptor):
    def wrap(self, handler: Any, method: str) -> Handler:
        behavior = behavior_of(handler)

        if not handler.response_streaming:

            async def unary_response(request: Any, context: Context) -> Any:
                try:
                    return await behavior(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as error:
                    await _internal(context, method, error)

            return same_kind(handler, unary_response)

        async def streaming_response(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async with aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        yield response
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await _internal(context, method, error)

        return same_kind(handler, streaming_response)


async def _internal(context: Context, method: str, error: Exception) -> None:
    log.error("unhandled %s in %s", type(error).__name__, method, exc_info=error)
    span = trace.get_current_span()
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
