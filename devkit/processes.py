"""The server as a separate process, as users run it: started, probed, measured, stopped.

Used by the process tests, the hostile-client suite and the benchmarks alike. Every server
runs with ``PYTHONFAULTHANDLER=1``, and a server that died on its own fails the test with
its log — a crash shows as the faulthandler's trace, not as a confusing connection error.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from user_service.listening import free_port

CLI = str(Path(sys.executable).with_name("user-service"))


class ServerProcess:
    """``user-service serve`` in a subprocess on a free loopback port."""

    def __init__(
        self, database_url: str, *flags: str, env: dict[str, str] | None = None, host: str = "127.0.0.1"
    ) -> None:
        port = str(free_port())
        self.target = f"{host}:{port}"
        self.metrics_url = f"http://127.0.0.1:{free_port()}/metrics"
        # One server process unless the test asks for workers: the default (one per core) puts
        # a supervisor in front, and most tests observe one process (its metrics, its memory).
        workers = () if "--workers" in flags else ("--workers", "1")
        self._command = [CLI, "serve", "--host", host, "--port", port, *workers, *flags]
        self._env = {
            **os.environ,
            "PYTHONFAULTHANDLER": "1",  # a crash leaves its trace in the log
            "USER_SERVICE_DATABASE_URL": database_url,
            "USER_SERVICE_AUTH_ENABLED": "false",  # the auth tests pass generated credentials
            "USER_SERVICE_METRICS_PORT": self.metrics_url.rpartition(":")[2].removesuffix("/metrics"),
            **(env or {}),
        }
        self.process: subprocess.Popen[str] | None = None
        self._signalled = False
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
        self._signalled = True
        self.process.send_signal(signum)

    def assert_alive(self) -> None:
        """Fails with the server's log (a crash's faulthandler trace) if it has died."""
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            raise AssertionError(f"the server died ({how}); its log ends with:\n{self.log()[-12_000:]}")

    def metric(self, sample: str) -> float:
        """A sample's value from the server's /metrics (0 when the series does not exist yet),
        e.g. ``user_service_subscribers`` or ``name{label="value"}`` exactly as exposed."""
        match = re.search(rf"^{re.escape(sample)} (\S+)$", self._scrape(), re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def sample(self, name: str, **labels: str) -> float:
        """The sum of the series of ``name`` that carry every one of ``labels`` (0 if none)."""
        total = 0.0
        for found, value in re.findall(
            rf"^{re.escape(name)}{{([^}}]*)}} (\S+)$", self._scrape(), re.MULTILINE
        ):
            if all(f'{key}="{wanted}"' in found.split(",") for key, wanted in labels.items()):
                total += float(value)
        return total

    def started(self, method: str) -> float:
        """How many calls of ``method`` (e.g. ``LookupUsers``) the server has started
        handling: proof that a call reached it, whatever the client saw."""
        return self.sample("grpc_server_started_total", grpc_method=method)

    def _scrape(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return str(response.read().decode())

    def resources(self) -> Resources:
        """What the server process holds now: memory, file descriptors, threads."""
        assert self.process is not None
        process = psutil.Process(self.process.pid)
        with process.oneshot():
            return Resources(process.memory_info().rss, process.num_fds(), process.num_threads())

    def wait(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL); fails if it had died on its own."""
        died_on_its_own = ""
        if self.process is not None and not self._signalled and self.process.poll() is not None:
            died_on_its_own = f"exit {self.process.returncode}; log:\n{self.log()[-12_000:]}"
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.wait()
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        assert not died_on_its_own, f"the server died during the test ({died_on_its_own})"


@dataclass(frozen=True)
class Resources:
    rss_bytes: int
    fds: int
    threads: int

    def __str__(self) -> str:
        return f"RSS {self.rss_bytes / 2**20:.1f} MiB, {self.fds} fds, {self.threads} threads"
