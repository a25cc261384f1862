"""The native stack of ``make up`` — VictoriaLogs, Jaeger, Collector, Prometheus, the service with its
production defaults (auth, access log, metrics, tracing) — on free loopback ports, started
once for the stack tests, and one Locust run through it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from devkit.dev_credentials import DevCredentials, write_dev_credentials
from loadtest.report import read_rows
from scripts.stack.native import NativeStack
from scripts.stack.observe import Jaeger, Prometheus, VictoriaLogs, eventually
from scripts.stack.plan import FLAGS_FILE, REPO, StackPlan, StackPorts
from scripts.stack.probes import login, traced_call
from tests.conftest import require_tool

LOAD_SECONDS = 15


@dataclass
class RunningStack:
    stack: NativeStack
    plan: StackPlan
    credentials: DevCredentials
    prometheus: Prometheus
    jaeger: Jaeger
    seconds_to_ready: float
    seconds_to_first_trace: float
    token: str  # the development admin's access token

    @property
    def victorialogs(self) -> VictoriaLogs:
        return VictoriaLogs(self.plan.victorialogs_url)

    def admin_env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.credentials.client_env("admin"),
            "USER_SERVICE_TARGET": self.plan.target,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.plan.otlp_endpoint,
        }


@dataclass(frozen=True)
class LoadRun:
    started: float
    ended: float
    report_dir: Path


@cache
def env_versions() -> dict[str, str]:
    """The KEY=VALUE lines of .env: the versions compose and the native builds both use."""
    pairs = (line.split("=", 1) for line in (REPO / ".env").read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.lstrip().startswith("#")}


def require_stack_binaries() -> None:
    for name in ("otelcol-user-service", "jaeger", "prometheus", "victoria-logs"):
        require_tool(name)


@contextmanager
def native_stack(root: Path, flags_file: Path | None = None, replicas: int = 1) -> Iterator[RunningStack]:
    """A native stack in ``root`` on free ports, its first trace in Jaeger; down at the end.
    ``flags_file``: the replicas read this copy of the fault flags, not the repository's."""
    require_stack_binaries()
    credentials = write_dev_credentials(root / "credentials")
    plan = StackPlan(
        run_dir=root / "run",
        ports=StackPorts.free(),
        credentials_dir=root / "credentials",
        flags_file=flags_file or FLAGS_FILE,
        replicas=replicas,
    )
    stack = NativeStack(plan, credentials.server_env())
    started = time.monotonic()
    try:
        seconds_to_ready = stack.up(progress=lambda _: None)
        jaeger = Jaeger(plan.jaeger_url)
        token = login(plan.target, *credentials.secrets["admin"])
        first = traced_call(plan.target, token)
        assert eventually(lambda: jaeger.trace(first), timeout=30), "the first trace never reached Jaeger"
        yield RunningStack(
            stack,
            plan,
            credentials,
            Prometheus(plan.prometheus_url),
            jaeger,
            seconds_to_ready,
            time.monotonic() - started,
            token,
        )
    finally:
        stack.down()


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with native_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


def start_locust(running_stack: RunningStack, seconds: int, report_dir: Path) -> subprocess.Popen[bytes]:
    """``make load``'s run (``loadtest.run``) through the stack, in the background: the CRUD mix,
    every stream kind, two held subscriptions; traces start at the load generator (20 % sampled).
    Its gate is left to failures alone: the tests assert on them."""
    env = {
        **running_stack.admin_env(),
        "LOAD_SUBSCRIBERS": "2",
        "LOAD_MAX_P99_MS": "60000",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.2",
    }
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "loadtest.run", "--users", "12", "--spawn-rate", "12", "--quiet"),
            *("--run-time", f"{seconds}s", "--report-dir", str(report_dir)),
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def locust_totals(report_dir: Path) -> tuple[int, int]:
    """(requests, failures) of a finished run, from Locust's aggregate row."""
    _, aggregate = read_rows(report_dir / "locust_stats.csv")
    return aggregate.requests, aggregate.failures


@pytest.fixture(scope="session")
def load_run(running_stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> LoadRun:
    report_dir = tmp_path_factory.mktemp("load")
    started = time.time()
    locust = start_locust(running_stack, LOAD_SECONDS, report_dir)
    assert locust.wait(timeout=120) == 0
    requests, failures = locust_totals(report_dir)
    assert requests > 0
    assert failures == 0, f"{failures} of {requests} requests failed"
    return LoadRun(started, time.time(), report_dir)
