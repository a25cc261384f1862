"""The server as a separate process: what signals, crashes and external tools see."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scripts.otlp_receiver import OtlpReceiver

CLI = str(Path(sys.executable).with_name("user-service"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """``user-service serve`` in a subprocess on a free loopback port."""

    def __init__(
        self, database_url: str, *flags: str, env: dict[str, str] | None = None, host: str = "127.0.0.1"
    ) -> None:
        port = str(free_port())
        self.target = f"{host}:{port}"
        self._command = [CLI, "serve", "--host", host, "--port", port, *flags]
        self._env = {
            **os.environ,
            "USER_SERVICE_DATABASE_URL": database_url,
            "USER_SERVICE_AUTH_ENABLED": "false",  # the auth tests pass generated credentials
            **(env or {}),
        }
        self.process: subprocess.Popen[str] | None = None
        self._credentials: grpc.ChannelCredentials | None = None
        # A file, not a pipe: nobody reads a pipe while the server logs, and a full pipe
        # would stall the server.
        self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by stop()

    def start(self, ready_within: float = 15.0) -> ServerProcess:
        self.process = subprocess.Popen(self._command, env=self._env, stderr=self._log, text=True)
        give_up = time.monotonic() + ready_within
        while self.health() != health_pb2.HealthCheckResponse.SERVING:
            assert self.process.poll() is None, f"server exited: {self.log()}"
            assert time.monotonic() < give_up, "server did not become SERVING in time"
            time.sleep(0.05)
        return self

    def log(self) -> str:
        """Everything the server wrote to stderr so far."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def start_with(self, tls_files: tuple[Path, Path, Path]) -> ServerProcess:
        """Starts a server that speaks mutual TLS: health checks use these (CA, cert, key)."""
        ca, cert, key = (path.read_bytes() for path in tls_files)
        self._credentials = grpc.ssl_channel_credentials(ca, key, cert)
        return self.start()

    def health(self, service: str = "") -> int | None:
        """The health status, or None when the server does not answer."""
        channel = (
            grpc.secure_channel(self.target, self._credentials)
            if self._credentials
            else grpc.insecure_channel(self.target)
        )
        with channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=1
                )
            except grpc.RpcError:
                return None
        return int(response.status)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.wait()
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(autouse=True)
def export_traces_to_receiver(otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers and CLI calls started by these tests export their spans to a real OTLP receiver."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("USER_SERVICE_METRICS_PORT", "0")


@pytest.fixture
def server_process(database_url: str) -> Iterator[ServerProcess]:
    server = ServerProcess(database_url, "--grace-period", "5").start()
    yield server
    server.stop()


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, check=check)
