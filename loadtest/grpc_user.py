"""A Locust ``User`` for gRPC: correct statistics for every RPC kind, timed where the call is
made, cheap enough not to be the bottleneck.

Locust has no maintained gRPC support; its documentation shows a unary-only interceptor on
grpc's blocking API under gevent. Choices here, and why (figures: ``make bench-load``,
``bench/README.md``):

* **grpc.aio on gevent's hub** (``loadtest.hub_loop``): a user's greenlet hands its call to
  the process's asyncio loop, which makes it, times it and fires Locust's request event; the
  greenlet waits for the answer only when its task needs it. No native-thread hand-off per call
  (the blocking API's cost under gevent), so a held subscription's per-event delivery latency is
  the network's and the service's, not the generator's queue.
* **channels per worker process, not per user**: per-user channels mean per-user connections
  and were no faster when measured; they are opened by the first user of each process — never
  before Locust forks its ``--processes``. Held streams get a channel (a connection) of their
  own, so unary traffic never queues behind them for HTTP/2 stream slots.
* **statistics**: ``request_type`` is go-grpc-middleware's ``grpc_type`` (``unary``,
  ``server_stream``…); names are methods, and stream phases are rows of their own
  (``SubscribeUsers delivery`` is event commit → receipt); failures are named by status
  code (``NOT_FOUND``), never by message, so they group. The size Locust shows ("Average
  size (bytes)") is the serialized payload received; the messages a call carried go in the
  event's ``context`` (``loadtest.messages`` counts them).
* **credentials**: one login per process, renewed before expiry by whichever call needs the
  token next; every call carries a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gevent.lock
import grpc
import grpc.aio
from google.protobuf.message import Message
from locust import User
from locust.env import Environment
from locust.exception import StopUser

from loadtest.hub_loop import HubLoop
from loadtest.seed import is_seeded
from loadtest.settings import LoadSettings
from loadtest.tracing import CallSpans, LoadTracing, Metadata
from user_service.client import bearer, open_aio_channel
from user_service.config import ClientSettings
from user_service.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

Report = Callable[..., None]


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
        self._lock = asyncio.Lock()
        self._metadata: Metadata = ()
        self._renew_at = 0.0

    async def metadata(self) -> Metadata:
        if time.time() >= self._renew_at:
            async with self._lock:  # one call logs in; the others wait for its token
                if time.time() >= self._renew_at:
                    await self._login()
        return self._metadata

    def expire(self) -> None:
        """The server refused the token (UNAUTHENTICATED): log in again on next use."""
        self._renew_at = 0.0

    async def _login(self) -> None:
        """Reported as a ``Login`` row; a refused login is raised to the caller too."""
        client_id, secret = self._client
        started = time.perf_counter()
        try:
            response = await self._auth.Login(
                auth_pb2.LoginRequest(client_id=client_id, client_secret=secret), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            milliseconds = (time.perf_counter() - started) * 1000
            self._report("unary", "Login", milliseconds, error=GrpcStatusError(error.code()))
            raise
        self._report("unary", "Login", (time.perf_counter() - started) * 1000, response.ByteSize())
        self._metadata = bearer(response.access_token)
        self._renew_at = response.expire_time.ToDatetime().timestamp() - self._renew_before


@dataclass
class Connection:
    """What one worker process shares among its users: its loop, channels, stubs, token, ids."""

    hub: HubLoop
    spans: CallSpans | None  # None: tracing off
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
                hub = HubLoop.of_this_process()
                cls._instance = hub.run(cls._open(hub, report))
        return cls._instance

    @classmethod
    async def _open(cls, hub: HubLoop, report: Report) -> Connection:
        client, load = ClientSettings(), LoadSettings()
        tracing = LoadTracing.from_environment()
        unary = open_aio_channel(client)
        # Held subscriptions are not traced from here: a minute-long stream is no request. A
        # fixed window: a subscriber that reads slowly is cut off by the server, as a real slow
        # consumer is.
        streams = open_aio_channel(client, dedicated=True, fixed_window=True)
        tokens = TokenKeeper(
            auth_pb2_grpc.AuthServiceStub(unary),
            load.credentials(),
            client.timeout,
            load.renew_before_seconds,
            report,
        )
        connection = cls(
            hub,
            tracing.call_spans(),
            user_pb2_grpc.UserServiceStub(unary),
            user_pb2_grpc.UserServiceStub(streams),
            tokens,
            client.timeout,
            load,
        )
        connection.known_ids = await connection._existing_ids(limit=5000)
        return connection

    async def _existing_ids(self, limit: int) -> list[int]:
        """Ids of the seeded users: what readers ask for. Only those: a user that another
        process's (or a past run's) writers created may be deleted by them while this process
        reads it, and a clean run would report NOT_FOUND."""
        ids: list[int] = []
        request = user_pb2.ListUsersRequest(page_size=1000)
        while len(ids) < limit:
            page = await self.users.ListUsers(
                request, metadata=await self.tokens.metadata(), timeout=self.timeout
            )
            ids.extend(user.id for user in page.users if is_seeded(user))
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        return ids


@dataclass
class Outcome:
    """What a stream's body received: reported as the call's size and message count."""

    messages: int = 1
    size: int = 0  # serialized bytes


class GrpcUser(User):
    """Base of the scenarios: ``self.unary`` and ``self.stream`` make one call on the process's
    loop, time it there and report it to Locust."""

    abstract = True
    connection: Connection

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._fire = environment.events.request.fire

    def on_start(self) -> None:
        try:
            self.connection = Connection.of_this_process(self.report)
        except grpc.aio.AioRpcError as error:  # reported (Login); this user cannot do anything
            raise StopUser from error

    def unary(self, method: str, request: Message, name: str | None = None) -> Any:
        """One unary call of the user service's ``method``, reported under ``name``
        (default: the method's name); its response, or None if it failed."""
        return self.connection.hub.run(self._unary(method, request, name or method))

    async def _unary(self, method: str, request: Message, name: str) -> Message | None:
        """The hot path of every unary call, so written out flat: it is what the generator
        spends its core on. The span (when tracing) starts before the timing and ends after."""
        connection = self.connection
        metadata = await connection.tokens.metadata()
        span = None
        if connection.spans is not None:
            span, metadata = connection.spans.start(method, metadata)
        started = time.perf_counter()
        try:
            response: Message = await getattr(connection.users, method)(
                request, metadata=metadata, timeout=connection.timeout
            )
        except grpc.aio.AioRpcError as error:
            self._failed("unary", name, started, error)
            if span is not None:
                CallSpans.end(span, error.code())
            return None
        elapsed = time.perf_counter() - started
        if span is not None:
            CallSpans.end(span, grpc.StatusCode.OK)
        self._fire(  # type: ignore[no-untyped-call]
            request_type="unary",
            name=name,
            response_time=elapsed * 1000,
            response_length=response.ByteSize(),
            exception=None,
            context=None,
        )
        return response

    def stream(
        self, grpc_type: str, method: str, body: Callable[[Metadata, Outcome], Awaitable[None]]
    ) -> bool:
        """Times ``body(metadata, outcome)`` — a streaming call of ``method`` — as one request;
        an ``AioRpcError`` inside is a failure named by its status code. True if it succeeded."""
        return self.connection.hub.run(self._stream(grpc_type, method, body))

    async def _stream(
        self, grpc_type: str, method: str, body: Callable[[Metadata, Outcome], Awaitable[None]]
    ) -> bool:
        connection = self.connection
        metadata = await connection.tokens.metadata()
        span = None
        if connection.spans is not None:
            span, metadata = connection.spans.start(method, metadata)
        outcome = Outcome()
        started = time.perf_counter()
        try:
            await body(metadata, outcome)
        except grpc.aio.AioRpcError as error:
            self._failed(grpc_type, method, started, error)
            if span is not None:
                CallSpans.end(span, error.code())
            return False
        elapsed = time.perf_counter() - started
        if span is not None:
            CallSpans.end(span, grpc.StatusCode.OK)
        self.report(grpc_type, method, elapsed * 1000, outcome.size, outcome.messages)
        return True

    def _failed(self, grpc_type: str, name: str, started: float, error: grpc.aio.AioRpcError) -> None:
        code = error.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            self.connection.tokens.expire()
        self.report(grpc_type, name, (time.perf_counter() - started) * 1000, error=GrpcStatusError(code))

    def report(
        self,
        grpc_type: str,
        name: str,
        milliseconds: float,
        size: int = 0,
        messages: int = 1,
        error: Exception | None = None,
    ) -> None:
        """One row's event: ``size`` the payload bytes received, ``messages`` how many."""
        self._fire(  # type: ignore[no-untyped-call]
            request_type=grpc_type,
            name=name,
            response_time=milliseconds,
            response_length=size,
            exception=error,
            context={"messages": messages} if messages != 1 else None,
        )
