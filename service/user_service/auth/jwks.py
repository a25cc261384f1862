"""Verification keys from a JWKS endpoint (an external identity provider), by ``kid``.

Keys are cached by ``kid`` and looked up on the event loop without I/O; only a ``kid``
not seen before triggers a fetch, which runs in a worker thread (PyJWKClient is
synchronous) and at most once per ``min_refresh_seconds`` — so tokens with made-up key
ids cannot make the server hammer the identity provider.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt


class KeyUnavailableError(Exception):
    """No key with the token's ``kid`` could be found."""


class JwksKeys:
    def __init__(self, url: str, *, min_refresh_seconds: float = 30.0, timeout_seconds: float = 5.0) -> None:
        self._client = jwt.PyJWKClient(
            url, cache_keys=False, cache_jwk_set=False, timeout=int(timeout_seconds)
        )
        self._keys: dict[str, Any] = {}
        self._min_refresh = min_refresh_seconds
        self._last_refresh = float("-inf")
        self._refreshing = asyncio.Lock()

    async def key_for(self, token: str) -> Any:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as error:
            raise KeyUnavailableError("token is malformed") from error
        if not isinstance(kid, str):
            raise KeyUnavailableError("token has no key id (kid)")
        key = self._keys.get(kid)
        if key is None:
            async with self._refreshing:
                if kid not in self._keys and time.monotonic() - self._last_refresh >= self._min_refresh:
                    await self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise KeyUnavailableError("token signed with an unknown key")
        return key

    async def _refresh(self) -> None:
        self._last_refresh = time.monotonic()
        try:
            keys = await asyncio.to_thread(self._client.get_signing_keys)
        except jwt.PyJWKClientError as error:
            raise KeyUnavailableError("signing keys are unavailable") from error
        self._keys = {key.key_id: key.key for key in keys if key.key_id}
