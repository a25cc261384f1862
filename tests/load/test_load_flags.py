"""The load generator's fault flags (loadtest/flags.py), followed by a headless Locust run against
a server process at production defaults: slow consumers get cut off by the server and resume
with nothing lost; a traffic spike multiplies the users while it is on, and the count goes back
when it is off. Flags are turned on and off in the run's copy of the flag file, as `make fault`
does."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.dev_credentials import DevCredentials
from devkit.otlp_receiver import OtlpReceiver
from devkit.processes import ServerProcess
from loadtest.flags import LOAD_FLAGS, load_fault_of
from scripts import faults
from scripts.stack.observe import eventually
from scripts.stack.plan import FLAGS_FILE
from tests.load.conftest import PYTHON, REPO, load, production_server
from user_service.faults import FlagState


@pytest.fixture
def flags_file(tmp_path: Path) -> Path:
    """A copy of the repository's flag file."""
    copy = tmp_path / "flags.flagd.json"
    shutil.copy(FLAGS_FILE, copy)
    return copy


@pytest.fixture
def small_buffers(
    tmp_path: Path, credentials: DevCredentials, otlp_receiver: OtlpReceiver
) -> Iterator[ServerProcess]:
    """Production defaults but 32 events of buffer per subscriber: a slow one is cut off soon."""
    with production_server(
        tmp_path, credentials, otlp_receiver, USER_SERVICE_SUBSCRIBER_BUFFER="32"
    ) as process:
        yield process


def test_slow_consumers_are_cut_off_and_resume_with_nothing_lost(
    small_buffers: ServerProcess,
    credentials: DevCredentials,
    tmp_path: Path,
    otlp_receiver: OtlpReceiver,
    flags_file: Path,
) -> None:
    """slowReaders: each held subscription takes 100 ms over each event while the feed brings
    far more (a mix of batch creates: hundreds of events a second); once the connection's window
    and the server's buffer are full, the server cuts it off (its too_slow count) with its resume
    point, and the run has no failure but the streams that were cut off."""
    faults.edit(
        flags_file, lambda document: faults.turn_on(document, "loadGeneratorSlowConsumers", "slowReaders")
    )
    run = load(
        small_buffers,
        credentials,
        tmp_path / "report",
        otlp_receiver,
        seconds=20,
        users=8,
        LOAD_FLAGS_FILE=str(flags_file),
        LOAD_MIX="batch=1",
    )
    cut = small_buffers.sample("user_service_subscriber_cutoffs_total", reason="too_slow")
    assert cut >= 2, f"{cut} subscribers cut off: " + run.output
    failures = run.failures()
    assert set(failures) <= {("SubscribeUsers stream", "RESOURCE_EXHAUSTED")}, failures
    deliveries, _ = run.counts()[("server_stream", "SubscribeUsers delivery")]
    assert deliveries > 0


def test_a_traffic_spike_multiplies_the_users_while_it_is_on(
    server: ServerProcess,
    credentials: DevCredentials,
    tmp_path: Path,
    otlp_receiver: OtlpReceiver,
    flags_file: Path,
) -> None:
    """x4: the run's 4 users become 16 within a few seconds of the flag going on, and 4 again
    once it is off — Locust's own user count, second by second (its stats history)."""
    report = tmp_path / "report"
    report.mkdir()
    locust = _start_locust(server, credentials, report, otlp_receiver, flags_file, users=4, seconds=30)
    try:
        assert eventually(lambda: _users_now(report) == 4, timeout=15), _users_now(report)
        faults.edit(flags_file, lambda document: faults.turn_on(document, "loadGeneratorTrafficSpike", "x4"))
        assert eventually(lambda: _users_now(report) == 16, timeout=15), _users_now(report)
        faults.edit(flags_file, lambda document: faults.turn_off(document, "loadGeneratorTrafficSpike"))
        assert eventually(lambda: _users_now(report) == 4, timeout=15), _users_now(report)
    finally:
        locust.terminate()
        locust.wait(timeout=30)


def test_every_load_variant_in_the_repository_file_is_valid() -> None:
    document = faults.read(FLAGS_FILE)
    for key in LOAD_FLAGS:
        for variant, value in document["flags"][key]["variants"].items():
            assert (load_fault_of(FlagState(key, variant), value) is None) == (variant == "off"), variant


def _start_locust(
    server: ServerProcess,
    credentials: DevCredentials,
    report: Path,
    otlp_receiver: OtlpReceiver,
    flags_file: Path,
    *,
    users: int,
    seconds: int,
) -> subprocess.Popen[bytes]:
    """Locust itself, headless, writing its stats history every second (Locust's default)."""
    env = {
        **os.environ,
        **credentials.client_env("admin"),
        "USER_SERVICE_TARGET": server.target,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "LOAD_SUBSCRIBERS": "0",
        "LOAD_FLAGS_FILE": str(flags_file),
    }
    command = [PYTHON, "-m", "loadtest", "-f", "loadtest/locustfile.py", "--headless"]
    command += ["--users", str(users), "--spawn-rate", str(users), "--run-time", f"{seconds}s"]
    command += ["--csv", str(report / "locust"), "--only-summary"]
    return subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _users_now(report: Path) -> int | None:
    """The user count of the newest row of Locust's stats history."""
    history = report / "locust_stats_history.csv"
    if not history.exists():
        return None
    with history.open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["Name"] == "Aggregated"]
    return int(rows[-1]["User Count"]) if rows else None
