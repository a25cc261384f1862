"""A user service that answers from constants: the load generator's benchmark target.

    python -m bench.constant_server PORT

Login returns a token nobody checks, GetUser one fixed user, ListUsers one page,
SubscribeUsers an endless stream of events stamped with the current time (paced by
``--event-interval``). A sync grpc server on a thread pool, the fastest Python server here,
so that the generator — not the service — is what gets measured.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from user_service.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

USER = user_pb2.User(id=1, name="Constant", email="constant@example.com", etag="1")


class ConstantAuth(auth_pb2_grpc.AuthServiceServicer):
    def Login(self, request: auth_pb2.LoginRequest, context: grpc.ServicerContext) -> auth_pb2.LoginResponse:
        expires = Timestamp()
        expires.FromSeconds(int(time.time()) + 3600)
        return auth_pb2.LoginResponse(access_token="constant", token_type="Bearer", expire_time=expires)


class ConstantUsers(user_pb2_grpc.UserServiceServicer):
    def __init__(self, event_interval: float) -> None:
        self._event_interval = event_interval

    def GetUser(
        self, request: user_pb2.GetUserRequest, context: grpc.ServicerContext
    ) -> user_pb2.GetUserResponse:
        return user_pb2.GetUserResponse(user=USER)

    def ListUsers(
        self, request: user_pb2.ListUsersRequest, context: grpc.ServicerContext
    ) -> user_pb2.ListUsersResponse:
        return user_pb2.ListUsersResponse(users=[USER])

    def SubscribeUsers(
        self, request: user_pb2.SubscribeUsersRequest, context: grpc.ServicerContext
    ) -> Iterator[user_pb2.UserEvent]:
        event_id = 0
        while context.is_active():
            event_id += 1
            event = user_pb2.UserEvent(
                event_id=event_id, type=user_pb2.UserEvent.EVENT_TYPE_UPDATED, user=USER
            )
            event.event_time.GetCurrentTime()
            yield event
            if self._event_interval:
                time.sleep(self._event_interval)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("port", type=int)
    parser.add_argument("--event-interval", type=float, default=0.0, help="seconds between stream events")
    parser.add_argument("--threads", type=int, default=64)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(args.threads))
    auth_pb2_grpc.add_AuthServiceServicer_to_server(ConstantAuth(), server)
    # Only what the benchmark calls is implemented; the rest answers UNIMPLEMENTED.
    users = ConstantUsers(args.event_interval)  # type: ignore[abstract]
    user_pb2_grpc.add_UserServiceServicer_to_server(users, server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
