"""A client process that opens streams of every kind and then waits to be killed.

    python -m tests.hostile.abrupt_client TARGET TOKEN

Prints ``ready`` once every stream is open and mid-flight; the test then SIGKILLs it, so
the server sees its connection vanish with streams mid-replay, live, mid-bidi and
mid-client-stream.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import grpc

from user_service.gen.user.v1 import user_pb2, user_pb2_grpc


async def main(target: str, token: str) -> None:
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        replaying = [
            users.SubscribeUsers(user_pb2.SubscribeUsersRequest(since_event_id=0), metadata=metadata)
            for _ in range(10)
        ]
        _live = [users.SubscribeUsers(user_pb2.SubscribeUsersRequest(), metadata=metadata) for _ in range(10)]
        lookups = [users.LookupUsers(metadata=metadata) for _ in range(5)]
        batches = [users.BatchCreateUsers(metadata=metadata) for _ in range(5)]
        for call in replaying:
            await call.read()
        for lookup in lookups:
            await lookup.write(user_pb2.GetUserRequest(id=1))
            await lookup.read()
        for batch in batches:
            tag = uuid.uuid4().hex[:12]
            await batch.write(
                user_pb2.CreateUserRequest(user=user_pb2.User(name="Abrupt", email=f"{tag}@x.org"))
            )
        print("ready", flush=True)
        await asyncio.sleep(60)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
