"""The RPC being served: the state one call carries and the contracts of those who watch it.

Handlers and interceptors sit side by side and both need to know about the call — who the
caller is, how many messages went out, where a stream could be resumed — and observers
(spans, metrics, the access log, the change feed's telemetry) need a view of it that outlives
its ``ServicerContext``. All of that lives here, so that none of them imports another:

* context variables, one value per call (each RPC runs in its own task, so nothing leaks between
  calls): ``current_principal`` (set by the auth layer), ``resume_point`` (kept by a resumable
  stream's handler, read by whoever ends the stream), ``sent_messages`` (installed by the
  observation layer, counted by ``send``);
* ``RpcCall``, the call as observers see it, captured at its start, and the observer
  protocols ``RpcObserver`` and ``SubscriptionObserver``, which telemetry implements.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from user_service.api.methods import GrpcType
from user_service.auth.tokens import Principal
from user_service.domain.errors import DomainError, resume_hint
from user_service.domain.models import UserEvent
from user_service.faults import FlagState

Context = grpc.aio.ServicerContext[Any, Any]

# --- who is calling ---------------------------------------------------------------------------

current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)
"""The authenticated caller of the current RPC, for handlers, logs and spans."""

# --- where a stream stands ----------------------------------------------------------------------


@dataclass(slots=True)
class ResumePoint:
    """Where a resumable stream stands, for the message that ends it from outside its handler
    (credentials that expire mid-stream, for instance). The handler installs one and keeps it
    current — one attribute write per message — so whoever ends the stream can tell the client
    where to pick up (``since_event_id=42``)."""

    request_field: str  # the request field a client resumes with
    value: int | None = None


resume_point: ContextVar[ResumePoint | None] = ContextVar("resume_point", default=None)


def with_resume_hint(message: str) -> str:
    """``message`` with the current call's resume hint (``domain.errors.resume_hint``)."""
    point = resume_point.get()
    return message if point is None else message + resume_hint(point.request_field, point.value)


# --- messages sent ------------------------------------------------------------------------------


class MessageCount:
    """Messages a call has sent; the observation layer installs one per call."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = 0


sent_messages: ContextVar[MessageCount | None] = ContextVar("sent_messages", default=None)


async def send(context: Context, message: Any) -> None:
    """Writes one response message of a stream and counts it for the observers."""
    await context.write(message)
    count = sent_messages.get()
    if count is not None:
        count.sent += 1


# --- what observers see -------------------------------------------------------------------------


@dataclass(slots=True)
class RpcCall:
    """One RPC as observers see it, captured at its start. ``received``/``sent`` count
    messages; ``details`` is the status message, known when the call finishes."""

    service: str
    method: str
    type: GrpcType
    peer: str
    metadata: tuple[tuple[str, Any], ...]
    start: float
    received: int = 0
    messages: MessageCount | None = None
    details: str = ""

    @property
    def sent(self) -> int:
        return self.messages.sent if self.messages is not None else 0


class RpcObserver(Protocol):
    """Told when each RPC starts and finishes. Whatever ``started`` returns is handed back to
    ``finished``; observers finish in reverse order, so the first one started (tracing,
    whose span is current meanwhile) is the last to finish."""

    def started(self, call: RpcCall) -> Any: ...

    def finished(
        self, call: RpcCall, state: Any, code: grpc.StatusCode, duration: float, error: BaseException | None
    ) -> None: ...


class SubscriptionObserver(Protocol):
    """Told what happens on each SubscribeUsers stream (telemetry implements it)."""

    def delivered(self, event: UserEvent, sequence: int) -> None:
        """``sequence`` counts the stream's deliveries from 1."""

    def ended(self, error: DomainError) -> None:
        """The feed ended the stream (cut-off, shutdown)."""


class FaultObserver(Protocol):
    """Told when a fault flag strikes a call (telemetry implements it)."""

    def injected(self, flag: FlagState, effect: str) -> AbstractContextManager[None]:
        """Entered around the fault's effect (``"latency"``: the wait; ``"error"``: the abort;
        ``"event held"``: a write whose change event waits in the stalled outbox)."""
        ...
