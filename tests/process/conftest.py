"""The server as a separate process: what signals, crashes and external tools see."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from devkit.otlp_receiver import OtlpReceiver
from devkit.processes import CLI, ServerProcess


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
