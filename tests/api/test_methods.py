"""The RPC table: one description of every method, checked when the server starts."""

from __future__ import annotations

import pytest

from user_service.api.methods import RPC_TABLE, USER_SERVICE, USER_SERVICE_ROLES, Budget, RpcTable, _methods
from user_service.auth.roles import Role


def test_every_method_is_described_with_its_kind_role_and_budget() -> None:
    subscribe = RPC_TABLE.get("/user.v1.UserService/SubscribeUsers")
    assert subscribe is not None
    assert (subscribe.type, subscribe.role, subscribe.budget) == (
        "server_stream",
        Role.READER,
        Budget.AUTHENTICATED,
    )
    facts = {
        path: (method.type, method.role, method.budget)
        for path in (
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/auth.v1.AuthService/Login",
        )
        if (method := RPC_TABLE.get(path)) is not None
    }
    assert facts == {
        "/grpc.health.v1.Health/Check": ("unary", None, Budget.EXEMPT),
        "/grpc.health.v1.Health/Watch": ("server_stream", None, Budget.PUBLIC),
        "/auth.v1.AuthService/Login": ("unary", None, Budget.PUBLIC),
    }
    assert RPC_TABLE.get("/user.v1.UserService/Nope") is None


def test_a_user_service_method_without_a_role_fails_instead_of_defaulting() -> None:
    roles = {name: role for name, role in USER_SERVICE_ROLES.items() if name != "DeleteUser"}
    with pytest.raises(LookupError, match="DeleteUser has no required role"):
        RpcTable(_methods(USER_SERVICE, roles))


def test_serving_a_service_the_table_does_not_know_fails_the_start() -> None:
    RPC_TABLE.require(["user.v1.UserService", "grpc.health.v1.Health"])
    with pytest.raises(LookupError, match=r"billing\.v1\.Billing"):
        RPC_TABLE.require(["user.v1.UserService", "billing.v1.Billing"])
