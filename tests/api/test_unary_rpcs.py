"""Every unary RPC and each of its status paths, over a real channel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.conftest import create_user
from user_service.gen.user.v1 import user_pb2

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub as Stub


async def _status(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def _violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None, "INVALID_ARGUMENT must carry google.rpc.Status details"
    found: dict[str, str] = {}
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request)
        found.update({v.field: v.description for v in bad_request.field_violations})
    return found


class TestCreateUser:
    async def test_returns_the_stored_user_with_server_fields(self, stub: Stub) -> None:
        user = await create_user(stub, "  Ada Lovelace ", "Ada@Example.COM")
        assert user.id > 0
        assert user.name == "Ada Lovelace"
        assert user.email == "ada@example.com"
        assert user.create_time.ToDatetime() == user.update_time.ToDatetime()
        assert user.etag

    async def test_ignores_output_only_fields(self, stub: Stub) -> None:
        request = user_pb2.CreateUserRequest(
            user=user_pb2.User(id=999, name="A", email="a@example.com", etag="7")
        )
        user = (await stub.CreateUser(request)).user
        assert user.id != 999
        assert user.etag != "7"

    async def test_duplicate_email_is_already_exists_case_insensitively(self, stub: Stub) -> None:
        await create_user(stub, email="ada@example.com")
        error = await _status(
            stub.CreateUser(user_pb2.CreateUserRequest(user=user_pb2.User(name="B", email="ADA@example.com")))
        )
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS

    @pytest.mark.parametrize(
        ("name", "email", "bad_fields"),
        [
            ("", "a@example.com", {"user.name"}),
            ("   ", "a@example.com", {"user.name"}),
            ("x" * 101, "a@example.com", {"user.name"}),
            ("bell\x07", "a@example.com", {"user.name"}),
            ("Ada", "", {"user.email"}),
            ("Ada", "no-at-sign", {"user.email"}),
            ("Ada", "a@localhost", {"user.email"}),
            ("Ada", "a..b@example.com", {"user.email"}),
            ("Ada", "a@" + "d" * 250 + ".com", {"user.email"}),
            ("", "", {"user.name", "user.email"}),
        ],
    )
    async def test_invalid_fields_are_named_in_invalid_argument(
        self, stub: Stub, name: str, email: str, bad_fields: set[str]
    ) -> None:
        error = await _status(
            stub.CreateUser(user_pb2.CreateUserRequest(user=user_pb2.User(name=name, email=email)))
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(_violations(error)) == bad_fields
        for field in bad_fields:
            assert field in (error.details() or "")


class TestGetUser:
    async def test_returns_the_user(self, stub: Stub) -> None:
        created = await create_user(stub)
        assert (await stub.GetUser(user_pb2.GetUserRequest(id=created.id))).user == created

    async def test_missing_user_is_not_found(self, stub: Stub) -> None:
        error = await _status(stub.GetUser(user_pb2.GetUserRequest(id=424242)))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert "424242" in (error.details() or "")

    @pytest.mark.parametrize("bad_id", [0, -1, -(2**63)])
    async def test_non_positive_id_is_invalid_argument(self, stub: Stub, bad_id: int) -> None:
        error = await _status(stub.GetUser(user_pb2.GetUserRequest(id=bad_id)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(_violations(error)) == {"id"}


class TestUpdateUser:
    async def test_updates_masked_fields_and_changes_etag(self, stub: Stub) -> None:
        user = await create_user(stub)
        request = user_pb2.UpdateUserRequest(
            user=user_pb2.User(id=user.id, name="Countess", email="ignored@example.com"),
            update_mask=FieldMask(paths=["name"]),
        )
        updated = (await stub.UpdateUser(request)).user
        assert (updated.name, updated.email) == ("Countess", user.email)
        assert updated.etag != user.etag
        assert updated.update_time.ToDatetime() >= user.update_time.ToDatetime()
        assert updated.create_time == user.create_time

    async def test_empty_mask_updates_the_fields_that_are_set(self, stub: Stub) -> None:
        user = await create_user(stub)
        request = user_pb2.UpdateUserRequest(user=user_pb2.User(id=user.id, email="new@example.com"))
        updated = (await stub.UpdateUser(request)).user
        assert (updated.name, updated.email) == (user.name, "new@example.com")

    async def test_matching_etag_succeeds_and_stale_etag_is_aborted(self, stub: Stub) -> None:
        user = await create_user(stub)
        first = user_pb2.UpdateUserRequest(user=user_pb2.User(id=user.id, name="One", etag=user.etag))
        await stub.UpdateUser(first)
        stale = user_pb2.UpdateUserRequest(user=user_pb2.User(id=user.id, name="Two", etag=user.etag))
        error = await _status(stub.UpdateUser(stale))
        assert error.code() == grpc.StatusCode.ABORTED
        assert (await stub.GetUser(user_pb2.GetUserRequest(id=user.id))).user.name == "One"

    async def test_missing_user_is_not_found(self, stub: Stub) -> None:
        error = await _status(
            stub.UpdateUser(user_pb2.UpdateUserRequest(user=user_pb2.User(id=77, name="X")))
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND

    async def test_taking_another_users_email_is_already_exists(self, stub: Stub) -> None:
        await create_user(stub, email="taken@example.com")
        user = await create_user(stub, email="mine@example.com")
        request = user_pb2.UpdateUserRequest(user=user_pb2.User(id=user.id, email="taken@example.com"))
        assert (await _status(stub.UpdateUser(request))).code() == grpc.StatusCode.ALREADY_EXISTS

    @pytest.mark.parametrize(
        ("user", "paths", "bad_fields"),
        [
            (user_pb2.User(id=0, name="X"), [], {"user.id"}),
            (user_pb2.User(id=1), [], {"update_mask"}),
            (user_pb2.User(id=1, name="X"), ["id"], {"update_mask"}),
            (user_pb2.User(id=1, name="X"), ["*", "name"], {"update_mask"}),
            (user_pb2.User(id=1, name=""), ["name"], {"user.name"}),
            (user_pb2.User(id=1, name="X", etag="not-an-etag"), [], {"user.etag"}),
        ],
    )
    async def test_invalid_requests_name_the_field(
        self, stub: Stub, user: user_pb2.User, paths: list[str], bad_fields: set[str]
    ) -> None:
        request = user_pb2.UpdateUserRequest(user=user, update_mask=FieldMask(paths=paths))
        error = await _status(stub.UpdateUser(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(_violations(error)) == bad_fields

    @pytest.mark.parametrize("paths", [["x" * 5000], [f"bogus_{n}" for n in range(2000)]])
    async def test_huge_unknown_mask_paths_are_invalid_argument_with_a_bounded_echo(
        self, stub: Stub, paths: list[str]
    ) -> None:
        """The message echoes unknown paths: unbounded, it overflowed the trailers and the
        client saw RESOURCE_EXHAUSTED instead of the mistake it made."""
        user = await create_user(stub)
        request = user_pb2.UpdateUserRequest(
            user=user_pb2.User(id=user.id, name="X"), update_mask=FieldMask(paths=paths)
        )
        error = await _status(stub.UpdateUser(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "update_mask" in _violations(error)
        assert len(error.details() or "") <= 1000


class TestDeleteUser:
    async def test_deleted_user_is_gone(self, stub: Stub) -> None:
        user = await create_user(stub)
        assert await stub.DeleteUser(user_pb2.DeleteUserRequest(id=user.id)) == user_pb2.DeleteUserResponse()
        error = await _status(stub.GetUser(user_pb2.GetUserRequest(id=user.id)))
        assert error.code() == grpc.StatusCode.NOT_FOUND

    async def test_second_delete_is_not_found(self, stub: Stub) -> None:
        user = await create_user(stub)
        await stub.DeleteUser(user_pb2.DeleteUserRequest(id=user.id))
        error = await _status(stub.DeleteUser(user_pb2.DeleteUserRequest(id=user.id)))
        assert error.code() == grpc.StatusCode.NOT_FOUND

    async def test_stale_etag_is_aborted_and_keeps_the_user(self, stub: Stub) -> None:
        user = await create_user(stub)
        await stub.UpdateUser(user_pb2.UpdateUserRequest(user=user_pb2.User(id=user.id, name="Changed")))
        error = await _status(stub.DeleteUser(user_pb2.DeleteUserRequest(id=user.id, etag=user.etag)))
        assert error.code() == grpc.StatusCode.ABORTED
        await stub.GetUser(user_pb2.GetUserRequest(id=user.id))

    async def test_invalid_id_and_etag_are_both_named(self, stub: Stub) -> None:
        error = await _status(stub.DeleteUser(user_pb2.DeleteUserRequest(id=-5, etag="W/x")))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(_violations(error)) == {"id", "etag"}
