"""Server spans for every RPC, as an ``RpcObserver`` of the project's observation wrapper.

Semantics follow ``opentelemetry-instrumentation-grpc`` (which the CLI uses on the client
side): span named after the full method, kind SERVER, W3C trace context continued from the
request metadata, ``rpc.*`` attributes, error status only for the codes the semantic
conventions count as server errors. It exists because the upstream aio server interceptor
costs ~25% of throughput even when nothing is sampled (see bench/README.md); riding on
the wrapper that metrics already need, the fixed cost nearly disappears.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import Token
from typing import Any

import grpc
from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from user_service.api.call import RpcCall, current_principal
from user_service.api.methods import HEALTH_SERVICE

_HEALTH_SERVICE = HEALTH_SERVICE.full_name
# https://opentelemetry.io/docs/specs/semconv/rpc/grpc/#grpc-status
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class _MetadataGetter(Getter[tuple[Any, ...]]):
    """Reads W3C headers (traceparent, tracestate, baggage) from gRPC invocation metadata."""

    def get(self, carrier: tuple[Any, ...], key: str) -> list[str] | None:
        values = [value for name, value in carrier if name == key]
        return values or None

    def keys(self, carrier: tuple[Any, ...]) -> list[str]:
        return [name for name, _ in carrier]


_GETTER = _MetadataGetter()


class ServerSpans:
    """Starts each RPC's server span and makes it current until the RPC finishes."""

    def __init__(self, tracer: trace.Tracer, untraced_services: Iterable[str] = (_HEALTH_SERVICE,)) -> None:
        self._tracer = tracer
        self._untraced = frozenset(untraced_services)

    def started(self, call: RpcCall) -> tuple[trace.Span, Token[Context]] | None:
        if call.service in self._untraced:
            return None
        parent = propagate.extract(call.metadata, getter=_GETTER)
        span = self._tracer.start_span(
            f"/{call.service}/{call.method}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": call.service, "rpc.method": call.method},
        )
        if span.is_recording():
            _add_peer(span, call.peer)
        return span, context.attach(trace.set_span_in_context(span, parent))

    def finished(
        self,
        call: RpcCall,
        state: tuple[trace.Span, Token[Context]] | None,
        code: grpc.StatusCode,
        duration: float,
        error: BaseException | None,
    ) -> None:
        if state is None:
            return
        span, token = state
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            caller = current_principal.get()
            if caller is not None:
                span.set_attribute("enduser.id", caller.subject)
            if code in _SERVER_ERRORS:
                span.set_status(Status(StatusCode.ERROR, f"{code.name}: {call.details}"))
            if error is not None and not isinstance(error, grpc.aio.AbortError | GeneratorExit):
                span.record_exception(error)
        span.end()
        context.detach(token)


def _add_peer(span: trace.Span, peer: str) -> None:
    """``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` -> network.peer.address and .port."""
    kind, _, address = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host, _, port = address.rpartition(":")
        span.set_attribute("network.peer.address", host.strip("[]"))
        if port.isdigit():
            span.set_attribute("network.peer.port", int(port))
