"""The hostile-client suite: a real server process in its production configuration, attacked.

Every test module here runs against a ``user-service serve`` subprocess started as users
start it — authentication on, access log on, metrics on, traces exported to a real OTLP
receiver — twice: once with the defaults, once with every span sampled and DEBUG logs.
``PYTHONFAULTHANDLER=1`` makes a crash leave its trace, and ``ServerProcess`` turns a dead
server into a failure that shows it.

Each behaviour runs inside ``hostile.attack(name, iterations)``: it warms up, records what
the server holds, runs the attack, then checks that the process is alive, health answers
SERVING, a normal authenticated call succeeds, RSS, file descriptors and threads are back
within a small bound, and nothing was logged at ERROR or with a traceback. The figures
of each attack are printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devkit.dev_credentials import DevCredentials, write_dev_credentials
from devkit.otlp_receiver import OtlpReceiver
from devkit.processes import Resources, ServerProcess
from user_service.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub

# How far an attack may leave the server above where it started (after its warm-up round).
RSS_GROWTH_LIMIT = 24 * 2**20
FD_GROWTH_LIMIT = 4
THREAD_GROWTH_LIMIT = 4
SEEDED_USERS = 300  # events to replay, so that cancellations land mid-replay

CONFIGURATIONS = {
    "defaults": {},
    "all-spans-debug-log": {"OTEL_TRACES_SAMPLER": "always_on", "USER_SERVICE_LOG_LEVEL": "DEBUG"},
}
_FIGURES: list[str] = []


@dataclass
class HostileServer:
    """The server under attack and what a well-behaved client needs to talk to it."""

    process: ServerProcess
    configuration: str
    tokens: dict[str, str]  # role -> access token
    credentials: DevCredentials
    seeded_ids: list[int] = field(default_factory=list)

    @property
    def target(self) -> str:
        return self.process.target

    def metadata(self, role: str = "admin") -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self.tokens[role]}"),)

    def channel(self, *options: tuple[str, Any]) -> grpc.aio.Channel:
        """A channel with its own connection: closing it closes that connection on the
        server too (channels to one target otherwise share one)."""
        return grpc.aio.insecure_channel(
            self.target, options=[("grpc.use_local_subchannel_pool", 1), *options]
        )

    def metric(self, sample: str) -> float:
        return self.process.metric(sample)

    def started(self, method: str) -> float:
        return self.process.started(method)

    @asynccontextmanager
    async def attack(
        self, behaviour: str, iterations: int, rss_limit: int = RSS_GROWTH_LIMIT
    ) -> AsyncIterator[list[str]]:
        """Runs the body as an attack and proves the server shrugged it off. The body may
        add notes (figures of its own) to the list it gets; they are printed with the rest.
        ``rss_limit``: for attacks whose first round fills the allocator's pools (they prove
        separately that further rounds do not grow)."""
        await self.assert_healthy()
        log_start = len(self.process.log())
        before = await self._settled()
        started = time.monotonic()
        notes: list[str] = []
        yield notes
        elapsed = time.monotonic() - started
        await self.assert_healthy()
        after = await self._settled(until=before)
        _FIGURES.append(
            f"{self.configuration:<20} {behaviour:<58} {iterations:>6} {elapsed:>6.1f}s"
            f"  {before.rss_bytes / 2**20:>6.1f} -> {after.rss_bytes / 2**20:>6.1f} MiB"
            f"  fds {before.fds:>3} -> {after.fds:>3}  threads {before.threads:>2} -> {after.threads:>2}"
            + "".join(f"  {note}" for note in notes)
        )
        assert after.rss_bytes - before.rss_bytes <= rss_limit, f"{behaviour}: {before} -> {after}"
        assert after.fds - before.fds <= FD_GROWTH_LIMIT, f"{behaviour}: {before} -> {after}"
        assert after.threads - before.threads <= THREAD_GROWTH_LIMIT, f"{behaviour}: {before} -> {after}"
        self.assert_clean_log(self.process.log()[log_start:], behaviour)

    async def assert_healthy(self) -> None:
        self.process.assert_alive()
        async with self.channel() as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            users: UserServiceAsyncStub = user_pb2_grpc.UserServiceStub(channel)
            response = await users.ListUsers(
                user_pb2.ListUsersRequest(page_size=1), metadata=self.metadata("reader"), timeout=5
            )
            assert len(response.users) == 1

    async def _settled(self, until: Resources | None = None, within: float = 15.0) -> Resources:
        """The server's resources once closed connections are gone (bounded wait)."""
        give_up = time.monotonic() + within
        while True:
            now = self.process.resources()
            done = until is None or (
                now.fds - until.fds <= FD_GROWTH_LIMIT and now.threads - until.threads <= THREAD_GROWTH_LIMIT
            )
            if done or time.monotonic() > give_up:
                return now
            await asyncio.sleep(0.1)

    @staticmethod
    def assert_clean_log(log: str, behaviour: str) -> None:
        for sign in ("Traceback", "Fatal Python error", '"level": "ERROR"', '"level": "CRITICAL"'):
            assert sign not in log, f"{behaviour}: the server logged {sign!r}:\n{log[-6000:]}"


@pytest.fixture(scope="module", params=list(CONFIGURATIONS))
def hostile_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, otlp_receiver: OtlpReceiver
) -> Iterator[HostileServer]:
    """The module's server in one configuration: logged in with every role (once: logins
    are throttled), seeded with users and warmed up."""
    configuration = str(request.param)
    directory: Path = tmp_path_factory.mktemp(f"hostile-{configuration}")
    credentials = write_dev_credentials(directory / "credentials")
    process = ServerProcess(
        f"sqlite:///{directory}/users.db",
        env={
            **credentials.server_env(),
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
            **CONFIGURATIONS[configuration],
        },
    ).start()
    try:
        server = HostileServer(process, configuration, {}, credentials)
        with grpc.insecure_channel(process.target) as channel:
            auth = auth_pb2_grpc.AuthServiceStub(channel)
            for role, (client_id, secret) in credentials.secrets.items():
                login = auth_pb2.LoginRequest(client_id=client_id, client_secret=secret)
                server.tokens[role] = auth.Login(login, timeout=10).access_token
            users = user_pb2_grpc.UserServiceStub(channel)
            users.BatchCreateUsers(
                (_seed_user(n) for n in range(SEEDED_USERS)), metadata=server.metadata(), timeout=60
            )
            listing = user_pb2.ListUsersRequest(page_size=1000)
            server.seeded_ids = [
                user.id for user in users.ListUsers(listing, metadata=server.metadata()).users
            ]
        yield server
    finally:
        process.stop()


@pytest.fixture
def hostile(hostile_process: HostileServer) -> HostileServer:
    return hostile_process


def _seed_user(n: int) -> user_pb2.CreateUserRequest:
    return user_pb2.CreateUserRequest(user=user_pb2.User(name=f"Seed {n}", email=f"seed{n}@example.com"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("hostile-client suite: what each attack left behind")
        terminalreporter.write_line(
            f"{'configuration':<20} {'behaviour':<58} {'iter.':>6} {'time':>7}  server before -> after"
        )
        for line in _FIGURES:
            terminalreporter.write_line(line)
