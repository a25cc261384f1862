"""The native stack of ``make up`` — Jaeger, Collector, Prometheus, the service with its
production defaults (auth, access log, metrics, tracing) — on free loopback ports, started
once for the stack tests, and one Locust run through it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from devkit.dev_credentials import DevCredentials, write_dev_credentials
from scripts.stack.native import NativeStack
from scripts.stack.observe import Jaeger, Prometheus, eventually
from scripts.stack.plan import REPO, StackPlan, StackPorts
from scripts.stack.probes import login, traced_call
from tests.conftest import require_tool

LOCUST = str(Path(sys.executable).with_name("locust"))
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

    def admin_env(self) -> dict[str, str]:
        client_id, secret = self.credentials.secrets["admin"]
        return {
            **os.environ,
            "USER_SERVICE_TARGET": self.plan.target,
            "USER_SERVICE_CLIENT_ID": client_id,
            "USER_SERVICE_CLIENT_SECRET": secret,
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
    for name in ("otelcol-user-service", "jaeger", "prometheus"):
        require_tool(name)


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    require_stack_binaries()
    root = tmp_path_factory.mktemp("stack")
    credentials = write_dev_credentials(root / "credentials")
    plan = StackPlan(run_dir=root / "run", ports=StackPorts.free(), credentials_dir=root / "credentials")
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


def start_locust(running_stack: RunningStack, seconds: int, report_dir: Path) -> subprocess.Popen[bytes]:
    """A headless Locust run through the stack: the CRUD mix, every stream kind, two held
    subscriptions; traces start at the load generator (20 % sampled)."""
    env = {
        **running_stack.admin_env(),
        "LOAD_SUBSCRIBERS": "2",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.2",
    }
    subprocess.run([sys.executable, "-m", "loadtest.seed"], env=env, cwd=REPO, check=True, timeout=60)
    return subprocess.Popen(
        [
            *(LOCUST, "-f", "loadtest/locustfile.py", "--headless", "--only-summary", "--processes", "1"),
            *("--users", "12", "--spawn-rate", "12", "--run-time", f"{seconds}s", "--stop-timeout", "5"),
            *("--exit-code-on-error", "0", "--csv", str(report_dir / "locust")),
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def locust_totals(report_dir: Path) -> tuple[int, int]:
    """(requests, failures) of a finished run, from Locust's aggregate row."""
    with (report_dir / "locust_stats.csv").open(newline="") as file:
        (aggregate,) = [row for row in csv.DictReader(file) if row["Name"] == "Aggregated"]
    return int(aggregate["Request Count"]), int(aggregate["Failure Count"])


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
