"""`STACK_REPLICAS=2 make up` natively: two service replicas on one SQLite file beside the real
Collector, Jaeger and Prometheus. A Locust run balances over both (an ``ipv4:`` target, round
robin), Prometheus scrapes each replica apart (the dashboard's per-replica panel has a series
per replica), and a subscriber on one replica receives a write made on the other."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.dev_credentials import write_dev_credentials
from scripts.dashboards import RED
from scripts.stack.native import NativeStack
from scripts.stack.observe import Jaeger, Prometheus, eventually
from scripts.stack.plan import StackPlan, StackPorts
from scripts.stack.probes import login
from tests.stack.conftest import RunningStack, locust_totals, require_stack_binaries, start_locust

CLI = str(Path(sys.executable).with_name("user-service"))
REPLICAS = 2


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    require_stack_binaries()
    root = tmp_path_factory.mktemp("replicated")
    credentials = write_dev_credentials(root / "credentials")
    plan = StackPlan(root / "run", StackPorts.free(), root / "credentials", replicas=REPLICAS)
    stack = NativeStack(plan, credentials.server_env())
    try:
        seconds = stack.up(progress=lambda _: None)
        token = login(plan.target, *credentials.secrets["admin"])
        prometheus, jaeger = Prometheus(plan.prometheus_url), Jaeger(plan.jaeger_url)
        yield RunningStack(stack, plan, credentials, prometheus, jaeger, seconds, 0.0, token)
    finally:
        stack.down()


def test_every_replica_is_a_component_on_its_own_ports(replicated: RunningStack) -> None:
    names = [name for name in replicated.stack.components if name.startswith("user-service")]
    assert names == ["user-service", "user-service-2"]
    assert replicated.plan.target == "ipv4:" + ",".join(
        f"127.0.0.1:{grpc}" for grpc, _ in replicated.plan.replica_ports()
    )


def test_a_load_run_is_balanced_over_the_replicas_and_scraped_per_replica(
    replicated: RunningStack, tmp_path: Path
) -> None:
    locust = start_locust(replicated, 6, tmp_path)
    assert locust.wait(timeout=90) == 0
    requests, failures = locust_totals(tmp_path)
    assert requests > 0
    assert failures == 0, f"{failures} of {requests} requests failed"
    (panel,) = [p for p in RED.metrics_panels() if p.title == "Requests per second by replica"]
    expr = (
        panel.queries[0]
        .expr.replace("$method", ".*")
        .replace("$type", ".*")
        .replace("$__rate_interval", "1m")
    )

    handled = 'sum by (instance) (grpc_server_handled_total{grpc_service="user.v1.UserService"})'

    def per_replica(query: str, busy: bool) -> list[dict[str, Any]] | None:
        series = replicated.prometheus.query(query)
        counted = [s for s in series if not busy or float(s["value"][1]) > 0]
        return counted if len(counted) == REPLICAS else None

    # Each replica served part of the run (counters, whatever the scrapes' timing) ...
    assert eventually(lambda: per_replica(handled, busy=True), timeout=30), replicated.prometheus.query(
        handled
    )
    # ... and the dashboard's per-replica panel draws a line for each.
    assert eventually(lambda: per_replica(expr, busy=False), timeout=30), replicated.prometheus.query(expr)


def test_a_subscriber_on_one_replica_sees_a_write_made_on_the_other(replicated: RunningStack) -> None:
    (first, _), (second, _) = replicated.plan.replica_ports()
    auth = ("--token", replicated.token)
    subscriber = subprocess.Popen(
        [CLI, "subscribe", "--limit", "1", "--timeout", "20", *auth, "--target", f"127.0.0.1:{second}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # the subscription is live (SubscribeUsers without since_event_id)
    email = f"cross-{time.time_ns()}@example.com"
    subprocess.run(
        [CLI, "create", "--name", "Cross", "--email", email, *auth, "--target", f"127.0.0.1:{first}"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    output, _ = subscriber.communicate(timeout=30)
    event = json.loads(output.strip().splitlines()[0])
    assert event["user"]["email"] == email
