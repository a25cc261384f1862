"""One table maps domain errors to gRPC status codes; statuses carry google.rpc details."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from user_service.domain.errors import (
    DomainError,
    EmailTakenError,
    EtagMismatchError,
    EventsExpiredError,
    FeedClosedError,
    StoreUnavailableError,
    SubscriberTooSlowError,
    TooManySubscribersError,
    TooManySubscriptionsError,
    UserNotFoundError,
    ValidationError,
)

STATUS_CODES: dict[type[DomainError], grpc.StatusCode] = {
    ValidationError: grpc.StatusCode.INVALID_ARGUMENT,
    UserNotFoundError: grpc.StatusCode.NOT_FOUND,
    EmailTakenError: grpc.StatusCode.ALREADY_EXISTS,
    EtagMismatchError: grpc.StatusCode.ABORTED,
    SubscriberTooSlowError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    TooManySubscribersError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    TooManySubscriptionsError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    FeedClosedError: grpc.StatusCode.UNAVAILABLE,
    StoreUnavailableError: grpc.StatusCode.UNAVAILABLE,
    EventsExpiredError: grpc.StatusCode.OUT_OF_RANGE,
}
# Status messages and field descriptions can echo client input: bounded, so that no
# request can make the status overflow the trailers (that would turn into another code).
MAX_MESSAGE_CHARS = 1000
MAX_DESCRIPTION_CHARS = 200


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_code_for(error: DomainError) -> grpc.StatusCode:
    for error_type, code in STATUS_CODES.items():
        if isinstance(error, error_type):
            return code
    raise LookupError(f"no status code mapped for {type(error).__name__}") from error


def rich_status(error: DomainError) -> grpc.Status:
    """The status for ``error``; validation failures carry a ``google.rpc.BadRequest``."""
    code = status_code_for(error)
    details: list[any_pb2.Any] = []
    if isinstance(error, ValidationError):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=bounded(v.field, MAX_DESCRIPTION_CHARS),
                    description=bounded(v.description, MAX_DESCRIPTION_CHARS),
                )
                for v in error.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        details.append(packed)
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name),
        message=bounded(str(error), MAX_MESSAGE_CHARS),
        details=details,
    )
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


async def abort_with(context: grpc.aio.ServicerContext[object, object], error: DomainError) -> None:
    status = rich_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)
