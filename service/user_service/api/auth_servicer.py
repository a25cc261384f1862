"""``auth.v1.AuthService``: client-credentials login returning a short-lived JWT."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from user_service.api.codec import timestamp
from user_service.api.errors import abort_with
from user_service.auth.credentials import ClientRegistry
from user_service.auth.throttle import LoginThrottle, LoginThrottledError
from user_service.auth.tokens import TokenService
from user_service.domain.errors import ValidationError
from user_service.domain.validation import FieldChecks
from user_service.gen.auth.v1 import auth_pb2, auth_pb2_grpc

Context = grpc.aio.ServicerContext[object, object]
MAX_CREDENTIAL_LENGTH = 256


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, clients: ClientRegistry, tokens: TokenService, throttle: LoginThrottle) -> None:
        self._clients = clients
        self._tokens = tokens
        self._throttle = throttle

    async def Login(self, request: auth_pb2.LoginRequest, context: Context) -> auth_pb2.LoginResponse:
        checks = FieldChecks()
        for field in ("client_id", "client_secret"):
            value = getattr(request, field)
            if not value:
                checks.add(field, "must not be empty")
            elif len(value) > MAX_CREDENTIAL_LENGTH:
                checks.add(field, f"must be at most {MAX_CREDENTIAL_LENGTH} characters")
        try:
            checks.raise_if_invalid()
        except ValidationError as error:
            await abort_with(context, error)
        peer_host = context.peer().rpartition(":")[0]
        try:
            self._throttle.admit(request.client_id, peer_host)
            # scrypt is deliberately slow: off the event loop, a bounded number at a time.
            client = await self._throttle.run(
                lambda: self._clients.authenticate(request.client_id, request.client_secret)
            )
        except LoginThrottledError as error:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        if client is None:
            self._throttle.failed(request.client_id)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid client credentials")
        assert client is not None
        token, expires_at = self._tokens.issue(client.id, client.roles)
        return auth_pb2.LoginResponse(
            access_token=token,
            token_type="Bearer",
            expire_time=timestamp(datetime.fromtimestamp(expires_at, UTC)),
            roles=[role.label for role in client.roles],
        )
