"""Property-based: whatever metadata a caller sends, the answer is never INTERNAL or UNKNOWN."""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from user_service.gen.user.v1 import user_pb2

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub

SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
printable = st.text(alphabet=string.ascii_letters + string.digits + " .-_=+/~!", max_size=200)
keys = st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True).filter(
    lambda key: not key.startswith("grpc-")
)
authorization = st.one_of(
    printable,
    printable.map(lambda value: f"Bearer {value}"),
    st.lists(st.from_regex(r"[A-Za-z0-9_-]{0,40}", fullmatch=True), min_size=3, max_size=3).map(
        lambda parts: "Bearer " + ".".join(parts)
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(auth=st.none() | authorization, extra=st.lists(st.tuples(keys, printable), max_size=4))
async def test_metadata_never_faults(
    users: UserServiceAsyncStub, auth: str | None, extra: list[tuple[str, str]]
) -> None:
    metadata = tuple(extra) + ((("authorization", auth),) if auth is not None else ())
    code = grpc.StatusCode.OK
    try:
        await users.ListUsers(user_pb2.ListUsersRequest(), metadata=metadata)
    except grpc.aio.AioRpcError as error:
        code = error.code()
    assert code not in SERVER_FAULTS
