"""A Locust ``User`` for gRPC: correct statistics for every RPC kind, cheap enough not to be
the bottleneck.

Locust has no maintained gRPC support; its documentation shows a unary-only interceptor.
Timing calls here and firing Locust's request event directly, on one channel per worker
process, produces 1.08-1.13x the requests per core of that pattern (``make bench-load``,
``bench/README.md``); most of what remains is Locust's scheduler and grpc's gevent thread
hop, which both pay. Choices, and why:

* **gevent**: ``grpc.experimental.gevent.init_gevent()`` runs when this module is imported,
  before any channel can exist, so grpc's blocking waits yield to other greenlets.
* **channels per worker process, not per user**: per-user channels mean per-user
  connections and threads, and were no faster when measured (~1.0x the requests per core of
  one channel per process); they are created lazily in the worker — never before Locust forks
  its ``--processes`` — which grpc requires. Held streams get a channel (a connection) of
  their own, so unary traffic never queues behind them for HTTP/2 stream slots.
* **statistics**: ``request_type`` is go-grpc-middleware's ``grpc_type`` (``unary``,
  ``server_stream``…); names are methods, and stream phases are rows of their own
  (``SubscribeUsers delivery`` is event commit → receipt); failures are named by status
  code (``NOT_FOUND``), never by message, so they group.
* **credentials**: one login per process, renewed before expiry by whichever greenlet needs
  the token next; every call carries a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import gevent.lock
import grpc
import grpc.experimental.gevent
from locust import User
from locust.env import Environment
from locust.exception import StopUser

from loadtest.seed import is_seeded
from loadtest.settings import LoadSettings
from loadtest.tracing import LoadTracing
from user_service.client import bearer, open_channel
from user_service.config import ClientSettings
from user_service.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

grpc.experimental.gevent.init_gevent()

T = TypeVar("T")
Report = Callable[[str, str, float, int, Exception | None], None]


class GrpcStatusError(Exception):
    """A failed call as Locust reports it: by status code alone, so failures group."""

    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code.name)
        self.code = code

    def __repr__(self) -> str:
        return self.code.name


class TokenKeeper:
    """Logs in with the client-credentials flow and renews the token before it expires."""

    def __init__(
        self, auth: Any, client: tuple[str, str], timeout: float, renew_before: float, report: Report
    ) -> None:
        self._auth, self._client, self._timeout, self._renew_before = auth, client, timeout, renew_before
        self._report = report
        self._lock = gevent.lock.Semaphore()
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._renew_at = 0.0

    def metadata(self) -> tuple[tuple[str, str], ...]:
        if time.time() >= self._renew_at:
            with self._lock:  # one greenlet logs in; the others wait for its token
                if time.time() >= self._renew_at:
                    self._login()
        return self._metadata

    def expire(self) -> None:
        """The server refused the token (UNAUTHENTICATED): log in again on next use."""
        self._renew_at = 0.0

    def _login(self) -> None:
        """Reported as a ``Login`` row; a refused login is raised to the caller too."""
        client_id, secret = self._client
        started = time.perf_counter()
        try:
            response = self._auth.Login(
                auth_pb2.LoginRequest(client_id=client_id, client_secret=secret), timeout=self._timeout
            )
        except grpc.RpcError as error:
            self._report(
                "unary", "Login", (time.perf_counter() - started) * 1000, 1, GrpcStatusError(error.code())
            )
            raise
        self._report("unary", "Login", (time.perf_counter() - started) * 1000, 1, None)
        self._metadata = bearer(response.access_token)
        self._renew_at = response.expire_time.ToDatetime().timestamp() - self._renew_before


@dataclass
class Connection:
    """What one worker process shares among its users: channels, stubs, token, ids."""

    users: Any  # UserServiceStub on the unary channel
    streams: Any  # UserServiceStub on the stream channel
    tokens: TokenKeeper
    timeout: float
    settings: LoadSettings
    known_ids: list[int] = field(default_factory=list)

    _instance: ClassVar[Connection | None] = None
    _opening: ClassVar[gevent.lock.Semaphore] = gevent.lock.Semaphore()

    @classmethod
    def of_this_process(cls, report: Report) -> Connection:
        """Opened by the first user of the process; the others wait for it (unguarded,
        every user spawned meanwhile would log in too — and be throttled)."""
        with cls._opening:
            if cls._instance is None:
                cls._instance = cls._open(report)
        return cls._instance

    @classmethod
    def _open(cls, report: Report) -> Connection:
        client, load = ClientSettings(), LoadSettings()
        tracing = LoadTracing.from_environment()
        unary = tracing.instrument(open_channel(client))
        # Held subscriptions are not traced from here: a minute-long stream is no request,
        # and the instrumentation's stream wrapper could not be cancelled. A fixed window: a
        # subscriber that reads slowly is cut off by the server, as a real slow consumer is.
        streams = open_channel(client, dedicated=True, fixed_window=True)
        tokens = TokenKeeper(
            auth_pb2_grpc.AuthServiceStub(unary),
            load.credentials(),
            client.timeout,
            load.renew_before_seconds,
            report,
        )
        connection = cls(
            user_pb2_grpc.UserServiceStub(unary),
            user_pb2_grpc.UserServiceStub(streams),
            tokens,
            client.timeout,
            load,
        )
        connection.known_ids = connection._existing_ids(limit=5000)
        return connection

    def _existing_ids(self, limit: int) -> list[int]:
        """Ids of the seeded users: what readers ask for. Only those: a user that another
        process's (or a past run's) writers created may be deleted by them while this process
        reads it, and a clean run would report NOT_FOUND."""
        ids: list[int] = []
        request = user_pb2.ListUsersRequest(page_size=1000)
        while len(ids) < limit:
            page = self.users.ListUsers(request, metadata=self.tokens.metadata(), timeout=self.timeout)
            ids.extend(user.id for user in page.users if is_seeded(user))
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        return ids


class GrpcUser(User):
    """Base of the scenarios: ``self.call`` times one call and reports it to Locust."""

    abstract = True
    connection: Connection

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._fire = environment.events.request.fire

    def on_start(self) -> None:
        try:
            self.connection = Connection.of_this_process(self.report)
        except grpc.RpcError as error:  # reported (Login); this user cannot do anything
            raise StopUser from error

    def call(self, grpc_type: str, name: str, invoke: Callable[[tuple[tuple[str, str], ...]], T]) -> T | None:
        """Runs ``invoke(metadata)`` and reports it; returns its result, or None if it failed.

        The hot path of every unary call, so written out flat (no context manager, no
        allocation but the event's): it is what the generator spends its core on.
        """
        metadata = self.connection.tokens.metadata()
        started = time.perf_counter()
        try:
            result = invoke(metadata)
        except grpc.RpcError as error:
            self._failed(grpc_type, name, started, error)
            return None
        self._fire(  # type: ignore[no-untyped-call]
            request_type=grpc_type,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=1,
            exception=None,
            context=None,
        )
        return result

    def unary(self, method: str, request: Any, name: str | None = None) -> Any:
        """One unary call of the user service's ``method``, reported under ``name``
        (default: the method's name); its response, or None if it failed."""
        stub_method, timeout = getattr(self.connection.users, method), self.connection.timeout
        return self.call(
            "unary", name or method, lambda metadata: stub_method(request, metadata=metadata, timeout=timeout)
        )

    def _failed(self, grpc_type: str, name: str, started: float, error: grpc.RpcError) -> None:
        code = error.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            self.connection.tokens.expire()
        self.report(grpc_type, name, (time.perf_counter() - started) * 1000, 1, GrpcStatusError(code))

    @contextmanager
    def measure(self, grpc_type: str, name: str) -> Iterator[Outcome]:
        """Times the body as one request; a ``grpc.RpcError`` inside is a failure named by
        its status code (and swallowed: the user goes on with its next task)."""
        outcome = Outcome()
        started = time.perf_counter()
        try:
            yield outcome
        except grpc.RpcError as error:
            self._failed(grpc_type, name, started, error)
            return
        self.report(grpc_type, name, (time.perf_counter() - started) * 1000, outcome.messages)

    def report(
        self,
        grpc_type: str,
        name: str,
        milliseconds: float,
        messages: int = 1,
        error: Exception | None = None,
    ) -> None:
        self._fire(  # type: ignore[no-untyped-call]
            request_type=grpc_type,
            name=name,
            response_time=milliseconds,
            response_length=messages,
            exception=error,
            context=None,
        )


@dataclass
class Outcome:
    """Filled in by the body of ``GrpcUser.measure``."""

    messages: int = 1
