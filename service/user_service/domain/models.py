"""Domain values: users, their changes and the events that record them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class User:
    """A stored user. ``version`` starts at 1 and grows by one on every update."""

    id: int
    name: str
    email: str
    create_time: datetime
    update_time: datetime
    version: int

    @property
    def etag(self) -> str:
        return str(self.version)

    def changed(self, changes: UserChanges, at: datetime) -> User:
        """The next version of this user: ``changes`` applied, updated ``at`` (never earlier
        than the previous update, whatever the clock did)."""
        return User(
            self.id,
            self.name if changes.name is None else changes.name,
            self.email if changes.email is None else changes.email,
            self.create_time,
            max(at, self.update_time),
            self.version + 1,
        )


@dataclass(frozen=True, slots=True)
class NewUser:
    """A validated user to create."""

    name: str
    email: str


@dataclass(frozen=True, slots=True)
class UserChanges:
    """Validated field updates; ``None`` leaves a field as it is."""

    name: str | None = None
    email: str | None = None


class EventType(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class UserEvent:
    """One committed change. ``event_id`` is strictly increasing in commit order."""

    event_id: int
    type: EventType
    user: User
    event_time: datetime
