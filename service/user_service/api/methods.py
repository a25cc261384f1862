"""One table of RPC facts: every method the server answers, derived once from the descriptors.

Each entry says what every layer needs to know about a method — its path, service, name,
kind (go-grpc-middleware's ``grpc_type``), the role it needs and the concurrency budget it
draws from. Authentication, admission, metrics, logging and tracing all read this table,
so a method cannot be, say, counted as the wrong kind by one layer and wrapped as another.
A UserService method without a role fails the start-up instead of defaulting silently.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from user_service.auth.roles import Role
from user_service.gen.auth.v1 import auth_pb2
from user_service.gen.user.v1 import user_pb2

GrpcType = Literal["unary", "client_stream", "server_stream", "bidi_stream"]

USER_SERVICE = user_pb2.DESCRIPTOR.services_by_name["UserService"]
AUTH_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"]
REFLECTION_SERVICE = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
# grpcio-reflection serves the same protocol under its v1 name too.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"

# The role each UserService RPC needs (roles include the ones below: admin > writer > reader).
USER_SERVICE_ROLES: Mapping[str, Role] = {
    "GetUser": Role.READER,
    "ListUsers": Role.READER,
    "SubscribeUsers": Role.READER,
    "LookupUsers": Role.READER,
    "CreateUser": Role.WRITER,
    "UpdateUser": Role.WRITER,
    "BatchCreateUsers": Role.WRITER,
    "DeleteUser": Role.ADMIN,
}


class Budget(enum.Enum):
    """Which concurrency budget a call draws from (see ``interceptors/admission.py``)."""

    EXEMPT = "exempt"  # health checks: must answer even when everything else is full
    PUBLIC = "public"  # callable without a token: a small budget of its own
    AUTHENTICATED = "authenticated"  # the service proper


@dataclass(frozen=True, slots=True)
class RpcMethod:
    path: str  # "/user.v1.UserService/GetUser"
    service: str  # "user.v1.UserService"
    name: str  # "GetUser"
    type: GrpcType
    role: Role | None  # None: callable without a token
    budget: Budget

    @property
    def client_streaming(self) -> bool:
        return self.type in ("client_stream", "bidi_stream")

    @property
    def server_streaming(self) -> bool:
        return self.type in ("server_stream", "bidi_stream")


def grpc_type(client_streaming: bool, server_streaming: bool) -> GrpcType:
    if client_streaming:
        return "bidi_stream" if server_streaming else "client_stream"
    return "server_stream" if server_streaming else "unary"


def _methods(
    service: ServiceDescriptor, roles: Mapping[str, Role] | None, *, full_name: str | None = None
) -> Iterable[RpcMethod]:
    name = full_name or service.full_name
    for method in service.methods:
        role = None if roles is None else roles.get(method.name)
        if roles is not None and role is None:
            raise LookupError(f"{name}/{method.name} has no required role: add it to USER_SERVICE_ROLES")
        kind = grpc_type(method.client_streaming, method.server_streaming)
        if role is not None:
            budget = Budget.AUTHENTICATED
        elif service is HEALTH_SERVICE and kind == "unary":
            budget = Budget.EXEMPT
        else:
            budget = Budget.PUBLIC
        yield RpcMethod(f"/{name}/{method.name}", name, method.name, kind, role, budget)


class RpcTable:
    """Every method by path. Unknown paths (a typo, a probe) get ``None``."""

    def __init__(self, methods: Iterable[RpcMethod]) -> None:
        self._by_path = {method.path: method for method in methods}

    def get(self, path: str) -> RpcMethod | None:
        return self._by_path.get(path)

    def of_service(self, service: str) -> list[RpcMethod]:
        return [method for method in self._by_path.values() if method.service == service]

    def require(self, services: Iterable[str]) -> None:
        """Fails unless every one of ``services`` is described here: a service the table
        does not know would be served without authentication or budget."""
        known = {method.service for method in self._by_path.values()}
        missing = sorted(set(services) - known)
        if missing:
            raise LookupError(f"services missing from the RPC table: {', '.join(missing)}")


RPC_TABLE = RpcTable(
    [
        *_methods(USER_SERVICE, USER_SERVICE_ROLES),
        *_methods(AUTH_SERVICE, None),
        *_methods(HEALTH_SERVICE, None),
        *_methods(REFLECTION_SERVICE, None),
        *_methods(REFLECTION_SERVICE, None, full_name=REFLECTION_V1),
    ]
)
