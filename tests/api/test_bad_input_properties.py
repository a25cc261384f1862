"""Property-based: whatever a client sends, the answer is never INTERNAL or UNKNOWN."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from user_service.gen.user.v1 import user_pb2

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub as Stub

SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
EXAMPLES = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
int32s = st.integers(min_value=-(2**31), max_value=2**31 - 1)
texts = st.text(max_size=300)
emailish = st.one_of(
    texts, st.emails().map(str), st.from_regex(r"[a-z.]{0,70}@[a-z.-]{0,20}", fullmatch=True)
)
users = st.builds(
    user_pb2.User, id=int64s, name=texts, email=emailish, etag=st.one_of(texts, int64s.map(str))
)
masks = st.lists(st.sampled_from(["name", "email", "id", "etag", "*", "create_time", ""]) | texts, max_size=4)


async def _status_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@EXAMPLES
@given(user=users, paths=masks, page_size=int32s, token=texts, user_id=int64s, etag=texts)
async def test_unary_rpcs_never_fault(
    stub: Stub,
    user: user_pb2.User,
    paths: list[str],
    page_size: int,
    token: str,
    user_id: int,
    etag: str,
) -> None:
    calls = [
        stub.CreateUser(user_pb2.CreateUserRequest(user=user)),
        stub.UpdateUser(user_pb2.UpdateUserRequest(user=user, update_mask=FieldMask(paths=paths))),
        stub.GetUser(user_pb2.GetUserRequest(id=user_id)),
        stub.DeleteUser(user_pb2.DeleteUserRequest(id=user_id, etag=etag)),
        stub.ListUsers(user_pb2.ListUsersRequest(page_size=page_size, page_token=token)),
    ]
    for call in calls:
        assert await _status_of(call) not in SERVER_FAULTS


@EXAMPLES
@given(items=st.lists(users, max_size=5), ids=st.lists(int64s, max_size=5), since=st.none() | int64s)
async def test_streaming_rpcs_never_fault(
    stub: Stub, items: list[user_pb2.User], ids: list[int], since: int | None
) -> None:
    async def creates() -> AsyncIterator[user_pb2.CreateUserRequest]:
        for user in items:
            yield user_pb2.CreateUserRequest(user=user)

    batch = await stub.BatchCreateUsers(creates())
    assert all(r.error.code not in (13, 2) for r in batch.results if r.HasField("error"))

    async def drain_lookup() -> None:
        # Write only after reading each answer: an aio client that writes after the server
        # has ended the call reports INTERNAL instead of the server's status (grpc#36066).
        call = stub.LookupUsers()
        for user_id in ids:
            await call.write(user_pb2.GetUserRequest(id=user_id))
            await call.read()
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF

    assert await _status_of(drain_lookup()) not in SERVER_FAULTS

    request = user_pb2.SubscribeUsersRequest()
    if since is not None:
        request.since_event_id = since

    async def first_event() -> None:
        async for _ in stub.SubscribeUsers(request, timeout=0.05):
            break

    assert await _status_of(first_event()) not in SERVER_FAULTS


@EXAMPLES
@given(
    payload=st.binary(max_size=200),
    method=st.sampled_from(["CreateUser", "UpdateUser", "ListUsers", "GetUser"]),
)
async def test_arbitrary_bytes_never_fault(channel: grpc.aio.Channel, payload: bytes, method: str) -> None:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        f"/user.v1.UserService/{method}", request_serializer=None, response_deserializer=None
    )
    assert await _status_of(call(payload)) not in SERVER_FAULTS
