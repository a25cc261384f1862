"""Issuing and verifying access tokens (JWT, PyJWT).

Verification pins the one configured algorithm (no ``alg: none``, no HS/RS key
confusion) and requires ``exp``, ``iat``, ``sub``, ``iss`` and ``aud``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization

from user_service.auth.jwks import JwksKeys, KeyUnavailableError
from user_service.auth.roles import Role

Algorithm = Literal["HS256", "RS256", "ES256"]
MIN_HMAC_SECRET_BYTES = 32


# Why a token was refused, in words that name the problem without echoing the token.
_REASONS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not valid yet"),
    (jwt.InvalidAudienceError, "token is for another audience"),
    (jwt.InvalidIssuerError, "token from an unknown issuer"),
    (jwt.InvalidSignatureError, "token signature does not verify"),
    (jwt.InvalidAlgorithmError, "token signed with a disallowed algorithm"),
)


class InvalidTokenError(Exception):
    """The token is not acceptable; the message says why without echoing it."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's subject, roles, and until when (UNIX seconds, the
    token's ``exp`` plus the clock-skew leeway) the token is accepted."""

    subject: str
    roles: tuple[Role, ...]
    valid_until: float

    def has(self, role: Role) -> bool:
        return any(granted >= role for granted in self.roles)


@dataclass(frozen=True)
class TokenKeys:
    algorithm: Algorithm
    signing_key: Any
    verification_key: Any
    key_id: str | None = None

    @classmethod
    def hmac(cls, secret: bytes, key_id: str | None = None) -> TokenKeys:
        if len(secret) < MIN_HMAC_SECRET_BYTES:
            raise ValueError(f"an HS256 secret needs at least {MIN_HMAC_SECRET_BYTES} bytes")
        return cls("HS256", secret, secret, key_id)

    @classmethod
    def asymmetric(cls, algorithm: Algorithm, private_pem: bytes, key_id: str | None = None) -> TokenKeys:
        private_key = serialization.load_pem_private_key(private_pem, password=None)
        return cls(algorithm, private_key, private_key.public_key(), key_id)

    @classmethod
    def verify_only(cls, algorithm: Algorithm) -> TokenKeys:
        """No key of our own: tokens come from an identity provider, keys from its JWKS."""
        return cls(algorithm, None, None)


class TokenService:
    """Issues tokens with its own key (if it has one) and verifies them with that key or,
    given ``jwks``, with the identity provider's keys."""

    VERIFIED_FOR = 60.0  # seconds a verified token is answered from memory
    VERIFIED_TOKENS = 4096  # how many are remembered; the oldest goes first

    def __init__(
        self,
        keys: TokenKeys,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        leeway_seconds: int,
        jwks: JwksKeys | None = None,
    ) -> None:
        self._keys = keys
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self.ttl_seconds = ttl_seconds
        self._leeway = leeway_seconds
        self._verified: dict[str, tuple[Principal, float]] = {}  # token -> (who, re-verify at)

    @property
    def can_issue(self) -> bool:
        return self._keys.signing_key is not None

    def issue(self, subject: str, roles: tuple[Role, ...], now: float | None = None) -> tuple[str, float]:
        """A signed token and when it expires (UNIX seconds)."""
        issued = int(now if now is not None else time.time())
        expires = issued + self.ttl_seconds
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "jti": uuid.uuid4().hex,
            "roles": [role.label for role in roles],
        }
        headers = {"kid": self._keys.key_id} if self._keys.key_id else None
        token = jwt.encode(claims, self._keys.signing_key, algorithm=self._keys.algorithm, headers=headers)
        return token, float(expires)

    async def authenticate(self, token: str) -> Principal:
        """Verifies ``token``; with JWKS the key lookup never blocks the event loop.

        A client sends the same token with every call until it renews it, and verifying a
        signature costs more than the rest of a GetUser; a token verified in the last
        ``VERIFIED_FOR`` seconds is answered from memory — keyed by the whole token, signature
        included, and never past its expiry. Re-verifying after that bound keeps a key rotated
        out of the JWKS from being honoured for long. Refusals are never remembered."""
        now = time.monotonic()
        known = self._verified.get(token)
        if known is not None and now < known[1] and time.time() < known[0].valid_until:
            return known[0]
        if self._jwks is None:
            principal = self.verify(token, self._keys.verification_key)
        else:
            try:
                key = await self._jwks.key_for(token)
            except KeyUnavailableError as error:
                raise InvalidTokenError(str(error)) from error
            principal = self.verify(token, key)
        if len(self._verified) >= self.VERIFIED_TOKENS:
            self._verified.pop(next(iter(self._verified)))  # the oldest entry
        self._verified[token] = (principal, now + self.VERIFIED_FOR)
        return principal

    def verify(self, token: str, key: Any) -> Principal:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._keys.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.MissingRequiredClaimError as error:
            raise InvalidTokenError(f"token lacks the {error.claim!r} claim") from error
        except jwt.InvalidTokenError as error:
            reason = next((text for kind, text in _REASONS if isinstance(error, kind)), "token is malformed")
            raise InvalidTokenError(reason) from error
        return Principal(
            subject=str(claims["sub"]),
            roles=_roles(claims.get("roles", [])),
            valid_until=float(claims["exp"]) + self._leeway,
        )


def _roles(claim: object) -> tuple[Role, ...]:
    """The ``roles`` claim, strictly: a list of known role names, nothing else. A token
    from an identity provider is validly signed but not necessarily well formed —
    ``null``, a number or ``{"admin": false}`` must not be read as roles."""
    if not isinstance(claim, list) or not all(isinstance(name, str) for name in claim):
        raise InvalidTokenError("token's roles claim is not a list of role names")
    try:
        return tuple(Role.parse(name) for name in claim)
    except ValueError as error:
        raise InvalidTokenError("token names an unknown role") from error
