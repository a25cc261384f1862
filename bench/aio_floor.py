"""The floor of a grpc.aio server: the service's proto, GetUser answered from a constant.

    python -m bench.aio_floor PORT

No interceptor, no store, no telemetry — what grpc.aio and protobuf cost by themselves, the
throughput the service is measured against (`make bench`). Its sync twin is
``bench.constant_server`` (a thread-pool server).
"""

from __future__ import annotations

import argparse
import asyncio

import grpc

from bench.constant_server import USER
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

RESPONSE = user_pb2.GetUserResponse(user=USER)


class FloorUsers(user_pb2_grpc.UserServiceServicer):
    async def GetUser(
        self, request: user_pb2.GetUserRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> user_pb2.GetUserResponse:
        return RESPONSE


async def serve(port: int) -> None:
    server = grpc.aio.server()
    user_pb2_grpc.add_UserServiceServicer_to_server(FloorUsers(), server)  # type: ignore[abstract]
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("port", type=int)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
