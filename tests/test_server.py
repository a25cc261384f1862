"""The composition root's start and shutdown as mirror images: whatever the start opened is
closed when a later step fails, and by a shutdown — the database file, the background loops,
the telemetry providers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from user_service.config import ServerSettings
from user_service.listening import PortInUseError
from user_service.server import SERVICE_NAME, start_server
from user_service.telemetry.setup import Telemetry, setup_telemetry


class ShutdownRecorder(SpanProcessor):
    """A span processor that remembers being shut down (the tracer provider shuts it down)."""

    def __init__(self) -> None:
        self.shut_down = False

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        self.shut_down = True


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port another socket listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def open_files_under(folder: Path) -> list[str]:
    """This process's file descriptors pointing into ``folder``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed since the listing (the listing's own)
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(folder)):
                found.append(target)
    return found


def telemetry_with(recorder: ShutdownRecorder) -> Telemetry:
    return setup_telemetry(SERVICE_NAME, span_processor=recorder)


async def test_a_start_that_cannot_bind_closes_everything_it_opened(tmp_path: Path, held_port: int) -> None:
    """The port is taken after the store, the outbox relay and retention are running: the
    start raises PortInUseError and leaves no database file open, no background task, and the
    telemetry providers shut down."""
    recorder = ShutdownRecorder()
    settings = ServerSettings(
        host="127.0.0.1",
        port=held_port,
        metrics_port=0,
        database_url=f"sqlite:///{tmp_path / 'users.db'}",
        auth_enabled=False,
        event_retention_seconds=3600,
    )
    tasks_before = asyncio.all_tasks()
    with pytest.raises(PortInUseError, match=f"cannot listen on 127.0.0.1:{held_port}"):
        await start_server(settings, telemetry_with(recorder))
    assert (tmp_path / "users.db").exists(), "the store was opened before the bind"
    assert open_files_under(tmp_path) == []
    assert asyncio.all_tasks() == tasks_before
    assert recorder.shut_down


async def test_a_shutdown_closes_what_the_start_opened(tmp_path: Path) -> None:
    recorder = ShutdownRecorder()
    settings = ServerSettings(
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        database_url=f"sqlite:///{tmp_path / 'users.db'}",
        auth_enabled=False,
        event_retention_seconds=3600,
    )
    tasks_before = asyncio.all_tasks()
    server = await start_server(settings, telemetry_with(recorder))
    assert open_files_under(tmp_path), "the database is open while serving"
    await server.shutdown(grace=0)
    assert open_files_under(tmp_path) == []
    assert asyncio.all_tasks() == tasks_before
    assert recorder.shut_down
