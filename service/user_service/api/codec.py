"""Conversions between protobuf messages and domain models."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from user_service.domain.clock import to_micros
from user_service.domain.models import EventType, User, UserEvent
from user_service.gen.user.v1 import user_pb2

_EVENT_TYPES = {
    EventType.CREATED: user_pb2.UserEvent.EVENT_TYPE_CREATED,
    EventType.UPDATED: user_pb2.UserEvent.EVENT_TYPE_UPDATED,
    EventType.DELETED: user_pb2.UserEvent.EVENT_TYPE_DELETED,
}


def timestamp(moment: datetime) -> Timestamp:
    """The same message as ``Timestamp.FromDatetime`` for the store's aware UTC datetimes, at a
    fraction of its cost (it validates and converts in Python; this is on every response)."""
    micros = to_micros(moment)
    seconds, micro = divmod(micros, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micro * 1000)


def user_message(user: User) -> user_pb2.User:
    return user_pb2.User(
        id=user.id,
        name=user.name,
        email=user.email,
        create_time=timestamp(user.create_time),
        update_time=timestamp(user.update_time),
        etag=user.etag,
    )


def event_message(event: UserEvent) -> user_pb2.UserEvent:
    return user_pb2.UserEvent(
        event_id=event.event_id,
        type=_EVENT_TYPES[event.type],
        user=user_message(event.user),
        event_time=timestamp(event.event_time),
    )
