"""Field rules for users and requests.

``FieldChecks`` runs every rule of a request and collects all violations, so a client
learns about each bad field at once; every violation names the field as the client
sent it (``user.email``, ``page_size``).
"""

from __future__ import annotations

import re
import unicodedata

from user_service.domain.errors import FieldViolation, ValidationError
from user_service.domain.pagination import PageLimits, decode_page_token

NAME_MAX_LENGTH = 100
EMAIL_MAX_LENGTH = 254
_LOCAL_PART_MAX_LENGTH = 64
_MAX_ETAG_DIGITS = 18

# Deliberately ASCII-only: a pragmatic subset of RFC 5321 addresses that every mail
# system accepts. Quoted local parts and internationalised addresses are refused.
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TOP_LEVEL_LABEL = re.compile(r"[A-Za-z]{2,63}")
# Control, format, surrogate, private-use and unassigned code points.
_FORBIDDEN_NAME_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


class FieldChecks:
    """Normalises request fields, recording a violation for each one that breaks a rule."""

    def __init__(self) -> None:
        self._violations: list[FieldViolation] = []

    def raise_if_invalid(self) -> None:
        if self._violations:
            raise ValidationError(self._violations)

    def add(self, field: str, description: str) -> None:
        """Records a violation found outside these checks."""
        self._violations.append(FieldViolation(field, description))

    def name(self, value: str, field: str) -> str:
        """NFC-normalised and trimmed; 1 to 100 characters, none of them control characters."""
        name = unicodedata.normalize("NFC", value).strip()
        if not name:
            self.add(field, "must not be empty")
        elif len(name) > NAME_MAX_LENGTH:
            self.add(field, f"must be at most {NAME_MAX_LENGTH} characters")
        elif any(unicodedata.category(ch) in _FORBIDDEN_NAME_CATEGORIES for ch in name):
            self.add(field, "must not contain control, format or unassigned characters")
        return name

    def email(self, value: str, field: str) -> str:
        """Trimmed and lower-cased; the shape name@example.com, at most 254 characters."""
        email = value.strip().lower()
        if not email:
            self.add(field, "must not be empty")
        elif len(email) > EMAIL_MAX_LENGTH:
            self.add(field, f"must be at most {EMAIL_MAX_LENGTH} characters")
        elif not _is_email(email):
            self.add(field, "must be an email address like name@example.com")
        return email

    def positive_id(self, value: int, field: str) -> int:
        if value <= 0:
            self.add(field, "must be a positive id")
        return value

    def non_negative(self, value: int, field: str) -> int:
        if value < 0:
            self.add(field, "must not be negative")
        return value

    def etag(self, value: str, field: str) -> int | None:
        """The version an etag stands for; ``None`` (no precondition) when empty."""
        if not value:
            return None
        if value.isascii() and value.isdigit() and len(value) <= _MAX_ETAG_DIGITS and int(value) > 0:
            return int(value)
        self.add(field, "is not an etag returned by this service")
        return None

    def page_token(self, value: str, field: str) -> int:
        try:
            return decode_page_token(value)
        except ValueError:
            self.add(field, "is not a page token returned by ListUsers")
            return 0

    def page_size(self, value: int, field: str, limits: PageLimits) -> int:
        """0 means the default; anything above the maximum is clamped to it (AIP-158)."""
        if value < 0:
            self.add(field, "must not be negative")
            return limits.default_size
        return min(value, limits.max_size) if value else limits.default_size


def _is_email(email: str) -> bool:
    local, _, domain = email.rpartition("@")
    labels = domain.split(".")
    return (
        0 < len(local) <= _LOCAL_PART_MAX_LENGTH
        and _LOCAL_PART.fullmatch(local) is not None
        and len(labels) >= 2
        and all(_DOMAIN_LABEL.fullmatch(label) for label in labels[:-1])
        and _TOP_LEVEL_LABEL.fullmatch(labels[-1]) is not None
    )
