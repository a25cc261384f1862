"""The Locust users the capacity benchmark compares (run by Locust only: never imported here).

``DocumentedPatternUser`` is the pattern Locust's documentation shows for gRPC: a channel
per user, a client interceptor that times each call and fires the request event, a
blocking stub. ``ProjectGetUser`` and ``ProjectSubscriber`` are this project's users
(``loadtest.grpc_user``) doing the same work. Every user runs flat out (no wait): the
benchmark divides requests by the CPU seconds the generator used.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import gevent
import grpc
from locust import User, constant, events, task
from locust.env import Environment

from loadtest.grpc_user import GrpcUser
from loadtest.locustfile import Subscriber
from user_service.client import bearer
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

REQUEST = user_pb2.GetUserRequest(id=1)
# The service needs a token on every call; the documented pattern sends one too, for fairness.
TOKEN = bearer("constant")


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _measure_window(environment: Environment, **_: Any) -> None:
    """Counts requests and this process's CPU seconds over a steady window (after
    ``BENCH_WARMUP`` s, for ``BENCH_DURATION`` s) and writes them to ``BENCH_WINDOW``:
    measured inside Locust, so the count and the CPU cover exactly the same interval."""
    path = os.environ.get("BENCH_WINDOW")
    if not path:
        return

    def measure() -> None:
        gevent.sleep(float(os.environ["BENCH_WARMUP"]))
        cpu, requests = time.process_time(), environment.stats.total.num_requests
        gevent.sleep(float(os.environ["BENCH_DURATION"]))
        window = {
            "cpu": time.process_time() - cpu,
            "requests": environment.stats.total.num_requests - requests,
        }
        Path(path).write_text(json.dumps(window))

    gevent.spawn(measure)


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


class ProjectGetUser(GrpcUser):
    wait_time = constant(0)

    @task
    def get_user(self) -> None:
        users, timeout = self.connection.users, self.connection.timeout
        self.call(
            "unary", "GetUser", lambda metadata: users.GetUser(REQUEST, metadata=metadata, timeout=timeout)
        )


class ProjectSubscriber(Subscriber):
    """One stream read as fast as the server sends it, delivery latency recorded per event."""

    fixed_count = 0
    abstract = False
