"""Keyset pagination: opaque page tokens that carry the last id of the previous page.

Listing by ``id > after_id ORDER BY id`` instead of by offset means concurrent inserts
and deletes never shift a page: no user is returned twice and none is skipped.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

_TOKEN_PREFIX = b"users/after/"
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class PageLimits:
    default_size: int
    max_size: int


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Users with id greater than ``after_id``, at most ``size`` of them."""

    after_id: int
    size: int


def encode_page_token(after_id: int) -> str:
    return base64.urlsafe_b64encode(_TOKEN_PREFIX + str(after_id).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> int:
    """The id a token resumes after; 0 for the empty (first-page) token.

    Raises ``ValueError`` for anything ``encode_page_token`` did not produce.
    """
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError("not base64") from error
    digits = raw.removeprefix(_TOKEN_PREFIX)
    if digits == raw or not digits.isascii() or not digits.isdigit() or len(digits) > len(str(_INT64_MAX)):
        raise ValueError("unknown token format")
    after_id = int(digits)
    if after_id > _INT64_MAX:
        raise ValueError("id out of range")
    return after_id
