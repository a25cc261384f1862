"""Errors the domain and the stores raise. Storage- and transport-neutral."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class DomainError(Exception):
    """Base of every expected, client-explainable failure."""


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field: ``field`` names it as the API client sees it."""

    field: str
    description: str


class ValidationError(DomainError):
    """The request breaks one or more field rules."""

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))

    @classmethod
    def single(cls, field: str, description: str) -> ValidationError:
        return cls([FieldViolation(field, description)])


class UserNotFoundError(DomainError):
    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        super().__init__(f"user {user_id} not found")


class EmailTakenError(DomainError):
    def __init__(self, email: str) -> None:
        self.email = email
        super().__init__("a user with this email already exists")


class EtagMismatchError(DomainError):
    def __init__(self, user_id: int, expected: str, actual: str) -> None:
        self.user_id = user_id
        super().__init__(
            f"user {user_id} has etag {actual!r}, not {expected!r}: it changed since you read it"
        )


def resume_hint(request_field: str, value: int | None) -> str:
    """``"; resume with since_event_id=42"``: the one wording of the hint a stream ended by the
    server gives (the feed's errors here, the auth layer through ``api/call.py``); nothing while
    there is no point to resume from."""
    return "" if value is None else f"; resume with {request_field}={value}"


class SubscriberTooSlowError(DomainError):
    """A subscriber fell further behind the live feed than its buffer allows."""

    def __init__(self, buffer_size: int, last_event_id: int) -> None:
        self.last_event_id = last_event_id
        resume = resume_hint("since_event_id", last_event_id)
        super().__init__(f"subscriber fell more than {buffer_size} events behind{resume}")


class TooManySubscribersError(DomainError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the server already has {limit} subscribers; retry later")


class TooManySubscriptionsError(DomainError):
    """One caller already holds as many subscriptions as a caller may."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"you already hold {limit} subscriptions, the most one caller may; close one first")


class FeedClosedError(DomainError):
    """The change feed is shutting down with the server."""

    def __init__(self, last_event_id: int | None) -> None:
        self.last_event_id = last_event_id
        super().__init__(f"the server is shutting down{resume_hint('since_event_id', last_event_id)}")


class StoreUnavailableError(DomainError):
    """The database cannot be reached now (down, restarting, or every connection busy)."""

    def __init__(self, cause: str) -> None:
        super().__init__(f"the database is unavailable ({cause}); retry with backoff")


class EventsExpiredError(DomainError):
    """A resume point older than what retention keeps: the events after it are partly gone."""

    def __init__(self, since_event_id: int, pruned_through: int) -> None:
        self.since_event_id = since_event_id
        self.pruned_through = pruned_through
        super().__init__(
            f"since_event_id={since_event_id} is older than the retained change history: events up to"
            f" {pruned_through} were removed by retention (the oldest resume point is"
            f" since_event_id={pruned_through}); subscribe without since_event_id, then re-read the"
            " users with ListUsers"
        )
