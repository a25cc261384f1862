"""Locust users on grpc's blocking API under gevent, for the capacity benchmark to compare
with this project's (run by plain ``locust``, monkey-patched as Locust's documentation has it;
never imported here).

``DocumentedPatternUser`` is the pattern Locust's documentation shows for gRPC: a channel per
user, a client interceptor that times each call and fires the request event, a blocking stub.
``GeventBlockingUser`` is this project's first model: the same blocking API, one channel per
process, the call timed and fired directly. Both run flat out (no wait): the benchmark divides
requests by the CPU seconds the generator used.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import grpc.experimental.gevent
from locust import User, constant, task
from locust.env import Environment

import bench.locust_window  # noqa: F401  (registers the measured window)
from user_service.client import bearer
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

grpc.experimental.gevent.init_gevent()

REQUEST = user_pb2.GetUserRequest(id=1)
# The service needs a token on every call; these send one too, for fairness.
TOKEN = bearer("constant")


class _TimingInterceptor(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, environment: Environment) -> None:
        self._fire = environment.events.request.fire

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        started = time.perf_counter()
        error = None
        response = continuation(details, request)
        try:
            response.result()
        except grpc.RpcError as failed:
            error = failed
        self._fire(  # type: ignore[no-untyped-call]
            request_type="grpc",
            name=details.method,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=error,
            context=None,
        )
        return response


class DocumentedPatternUser(User):
    wait_time = constant(0)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        channel = grpc.intercept_channel(
            grpc.insecure_channel(self.host or ""), _TimingInterceptor(environment)
        )
        self._stub = user_pb2_grpc.UserServiceStub(channel)

    @task
    def get_user(self) -> None:
        self._stub.GetUser(REQUEST, metadata=TOKEN, timeout=10)


class GeventBlockingUser(User):
    wait_time = constant(0)
    _stub: Any = None  # one channel per process, opened by its first user

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._fire = environment.events.request.fire

    @task
    def get_user(self) -> None:
        if GeventBlockingUser._stub is None:
            GeventBlockingUser._stub = user_pb2_grpc.UserServiceStub(grpc.insecure_channel(self.host or ""))
        started = time.perf_counter()
        response = self._stub.GetUser(REQUEST, metadata=TOKEN, timeout=10)
        self._fire(  # type: ignore[no-untyped-call]
            request_type="unary",
            name="GetUser",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=response.ByteSize(),
            exception=None,
            context=None,
        )
