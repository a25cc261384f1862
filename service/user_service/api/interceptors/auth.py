"""Every RPC but login, health and reflection needs ``authorization: Bearer <jwt>``.

No or invalid credentials -> UNAUTHENTICATED; valid but without the method's role ->
PERMISSION_DENIED. The caller reaches handlers, logs and spans through
``auth.context.current_principal``.

A token is checked when a call starts, and a stream lives no longer than the token that
opened it: every streaming RPC ends with UNAUTHENTICATED (and, where the handler keeps
one, a resume hint) when its token expires — the same instant, leeway included, at which
a new call with that token would be refused.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from user_service.api.call import Context, current_principal, with_resume_hint
from user_service.api.interceptors.wrapping import (
    Handler,
    HandlerWrappingInterceptor,
    behavior_of,
    rewrap,
)
from user_service.api.methods import RpcMethod
from user_service.auth.roles import Role
from user_service.auth.tokens import InvalidTokenError, Principal, TokenService

EXPIRED_MID_STREAM = "the access token expired during the stream; log in again"


class AuthInterceptor(HandlerWrappingInterceptor):
    def __init__(self, tokens: TokenService) -> None:
        super().__init__()
        self._tokens = tokens

    def wrap(self, handler: Any, method: RpcMethod) -> Handler:
        required = method.role
        if required is None:
            return handler  # type: ignore[no-any-return]
        behavior = behavior_of(handler)
        authorize = self._authorize

        if not (method.client_streaming or method.server_streaming):

            async def authorized(request: Any, context: Context) -> Any:
                await authorize(context, required, method.path)
                return await behavior(request, context)

            return rewrap(handler, authorized)

        async def authorized_while_valid(request: Any, context: Context) -> Any:
            principal = await authorize(context, required, method.path)
            loop = asyncio.get_running_loop()
            validity = asyncio.timeout_at(loop.time() + principal.valid_until - time.time())
            try:
                async with validity:
                    return await behavior(request, context)
            except TimeoutError:
                if not validity.expired():
                    raise
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, with_resume_hint(EXPIRED_MID_STREAM))

        return rewrap(handler, authorized_while_valid)

    async def _authorize(self, context: Context, required: Role, method: str) -> Principal:
        header = _authorization(context)
        if header is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "missing `authorization: Bearer <token>` metadata"
            )
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "authorization must use the Bearer scheme")
        try:
            principal = await self._tokens.authenticate(token.strip())
        except InvalidTokenError as error:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"invalid access token: {error}")
        if not principal.has(required):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"{method} needs the {required.label} role"
            )
        # Each RPC runs in its own task, so the value cannot leak into another call; it is
        # not reset, so the observers wrapped around this one still see who called.
        current_principal.set(principal)
        return principal


def _authorization(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else None
    return None
