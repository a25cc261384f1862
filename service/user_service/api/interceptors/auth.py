"""Every RPC but login, health and reflection needs ``authorization: Bearer <jwt>``.

No or invalid credentials -> UNAUTHENTICATED; valid but without the method's role ->
PERMISSION_DENIED. The caller reaches handlers, logs and spans through
``auth.context.current_principal``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

import grpc

from user_service.api.interceptors.wrapping import (
    Context,
    Handler,
    HandlerWrappingInterceptor,
    behavior_of,
    same_kind,
)
from user_service.auth.context import current_principal
from user_service.auth.roles import Role
from user_service.auth.tokens import InvalidTokenError, Principal, TokenService

PUBLIC_SERVICES = frozenset(
    {
        "auth.v1.AuthService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)


class AuthInterceptor(HandlerWrappingInterceptor):
    def __init__(self, tokens: TokenService, required_roles: Mapping[str, Role]) -> None:
        super().__init__()
        self._tokens = tokens
        self._required = required_roles

    def wrap(self, handler: Any, method: str) -> Handler:
        if method.lstrip("/").rpartition("/")[0] in PUBLIC_SERVICES:
            return handler  # type: ignore[no-any-return]
        required = self._required.get(method, Role.ADMIN)  # a method nobody listed: admins only
        behavior = behavior_of(handler)
        authorize = self._authorize

        if not handler.response_streaming:

            async def unary_response(request: Any, context: Context) -> Any:
                await authorize(context, required, method)
                return await behavior(request, context)

            return same_kind(handler, unary_response)

        async def streaming_response(request: Any, context: Context) -> AsyncIterator[Any]:
            await authorize(context, required, method)
            async with aclosing(behavior(request, context)) as responses:
                async for response in responses:
                    yield response

        return same_kind(handler, streaming_response)

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
            return str(value)
    return None
