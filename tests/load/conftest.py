"""Shared by the load generator's tests: a server process at production defaults on loopback,
and ``make load``'s run (``loadtest.run``) against it, as a subprocess (importing Locust here
would monkey-patch the test process for gevent)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from devkit.dev_credentials import DevCredentials, write_dev_credentials
from devkit.otlp_receiver import OtlpReceiver
from devkit.processes import ServerProcess

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[2]
EVERY_SCENARIO = {
    ("unary", "GetUser"),
    ("unary", "ListUsers"),
    ("unary", "ListUsers (walk)"),
    ("unary", "CreateUser"),
    ("unary", "UpdateUser"),
    ("unary", "DeleteUser"),
    ("client_stream", "BatchCreateUsers"),
    ("bidi_stream", "LookupUsers"),
    ("server_stream", "SubscribeUsers delivery"),
    ("server_stream", "SubscribeUsers first event"),
    ("server_stream", "SubscribeUsers stream"),
}


@dataclass
class LoadRun:
    returncode: int
    output: str
    report_dir: Path

    def counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(type, name) -> (requests, failures), from Locust's CSV."""
        with (self.report_dir / "locust_stats.csv").open(newline="") as file:
            return {
                (row["Type"], row["Name"]): (int(row["Request Count"]), int(row["Failure Count"]))
                for row in csv.DictReader(file)
                if row["Name"] != "Aggregated"
            }

    def failures(self) -> dict[tuple[str, str], int]:
        """(name, status code) -> occurrences."""
        with (self.report_dir / "locust_failures.csv").open(newline="") as file:
            return {(row["Name"], row["Error"]): int(row["Occurrences"]) for row in csv.DictReader(file)}


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> DevCredentials:
    return write_dev_credentials(tmp_path_factory.mktemp("load") / "credentials")


@contextmanager
def production_server(
    tmp_path: Path, credentials: DevCredentials, otlp_receiver: OtlpReceiver, **env: str
) -> Iterator[ServerProcess]:
    """A server process at production defaults on a fresh SQLite file, ``env`` on top."""
    process = ServerProcess(
        f"sqlite:///{tmp_path}/users.db",
        env={**credentials.server_env(), "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint, **env},
    ).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def server(
    tmp_path: Path, credentials: DevCredentials, otlp_receiver: OtlpReceiver
) -> Iterator[ServerProcess]:
    """The production configuration, every span sampled (to find the load's traces)."""
    with production_server(
        tmp_path, credentials, otlp_receiver, OTEL_TRACES_SAMPLER="always_on", OTEL_BSP_SCHEDULE_DELAY="100"
    ) as process:
        yield process


def load(
    server: ServerProcess,
    credentials: DevCredentials,
    report_dir: Path,
    otlp_receiver: OtlpReceiver,
    *,
    processes: int = 1,
    seconds: int = 8,
    users: int = 8,
    seed: bool = True,
    **env: str,
) -> LoadRun:
    """``make load``'s run (``loadtest.run``): seed, a headless Locust run, the report and its gate."""
    environment = {
        **os.environ,
        **credentials.client_env("admin"),
        "USER_SERVICE_TARGET": server.target,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "LOAD_SEED_USERS": "50",
        "LOAD_SUBSCRIBERS": "2",
        **env,
    }
    command = [PYTHON, "-m", "loadtest.run", "--users", str(users), "--spawn-rate", str(users), "--quiet"]
    command += ["--run-time", f"{seconds}s", "--processes", str(processes), "--report-dir", str(report_dir)]
    command += ["--html"] if seed else ["--html", "--no-seed"]
    # `python -m` resolves loadtest from the working directory, as `make load` does from the repo.
    ran = run(command, environment, check=False)
    assert ran.returncode in (0, 1), ran.stdout + ran.stderr  # 1: the gate failed (asserted by the tests)
    return LoadRun(ran.returncode, ran.stdout, report_dir)


def run(command: list[str], env: dict[str, str], *, check: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=check
    )
