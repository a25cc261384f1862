"""Time as the service keeps it: aware UTC datetimes at microsecond precision, the precision
both stores keep (so an event returned by a write equals the row read back later), and the
integer microseconds since the epoch that SQLite stores and protobuf Timestamps are built from."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def now_micros() -> int:
    """Now, in microseconds since the epoch."""
    return time.time_ns() // 1000


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def to_micros(moment: datetime) -> int:
    """``moment`` (aware) in microseconds since the epoch."""
    return (moment - EPOCH) // _MICROSECOND


def now() -> datetime:
    """Now, at microsecond precision."""
    return from_micros(now_micros())
