"""Every acknowledged write survives kill -9 of the server process."""

from __future__ import annotations

import asyncio
import signal

import grpc

from devkit.processes import ServerProcess
from tests.conftest import eventually
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc


async def test_acknowledged_writes_survive_sigkill_mid_write_burst(database_url: str) -> None:
    server = ServerProcess(database_url).start()
    acknowledged: dict[int, str] = {}
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = user_pb2_grpc.UserServiceStub(channel)

            async def writer(worker: int) -> None:
                for i in range(10_000):
                    email = f"w{worker}-{i}@example.com"
                    request = user_pb2.CreateUserRequest(user=user_pb2.User(name="x", email=email))
                    try:
                        response = await stub.CreateUser(request, timeout=5)
                    except grpc.aio.AioRpcError:
                        return  # the server died under this call: not acknowledged
                    acknowledged[response.user.id] = email

            writers = [asyncio.create_task(writer(n)) for n in range(4)]
            await eventually(lambda: len(acknowledged) >= 200, within=60)
            server.signal(signal.SIGKILL)  # mid-burst: some writes are in flight
            await asyncio.gather(*writers)
        assert server.wait() == -signal.SIGKILL
    finally:
        server.stop()

    restarted = ServerProcess(database_url).start()
    try:
        async with grpc.aio.insecure_channel(restarted.target) as channel:
            stub = user_pb2_grpc.UserServiceStub(channel)
            stored = {}
            token = ""
            while True:
                page = await stub.ListUsers(user_pb2.ListUsersRequest(page_size=1000, page_token=token))
                stored.update({user.id: user.email for user in page.users})
                token = page.next_page_token
                if not token:
                    break
            events = []
            async for event in stub.SubscribeUsers(
                user_pb2.SubscribeUsersRequest(since_event_id=0), timeout=2
            ):
                events.append(event.user.id)
                if len(events) == len(stored):
                    break
    finally:
        restarted.stop()
    missing = {user_id for user_id, email in acknowledged.items() if stored.get(user_id) != email}
    assert not missing, f"{len(missing)} acknowledged writes were lost"
    assert sorted(events) == sorted(stored), "every stored user has its event (same transaction)"
