"""This project's Locust users as the capacity benchmark runs them (by ``python -m loadtest``,
threads unpatched; never imported here): ``ProjectGetUser`` and ``ProjectSubscriber`` are
``loadtest.grpc_user``'s, flat out — the benchmark divides requests by the CPU seconds the
generator used. ``bench/documented_pattern.py`` holds the users they are compared with.
"""

from __future__ import annotations

from locust import constant, task

import bench.locust_window  # noqa: F401  (registers the measured window)
from loadtest.grpc_user import GrpcUser
from loadtest.locustfile import Subscriber
from user_service.gen.user.v1 import user_pb2

REQUEST = user_pb2.GetUserRequest(id=1)


class ProjectGetUser(GrpcUser):
    wait_time = constant(0)

    @task
    def get_user(self) -> None:
        self.unary("GetUser", REQUEST)


class ProjectSubscriber(Subscriber):
    """One stream read as fast as the server sends it, delivery latency recorded per event."""

    fixed_count = 0
    abstract = False
