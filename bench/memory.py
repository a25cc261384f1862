"""Peak memory of every component the compose stack runs: ``python -m bench.memory`` (``make bench-memory``).

docker-compose.yml gives each service a memory limit of at least 1.3x the peak measured here
(tests/stack/test_memory_budget.py holds compose, the README's table and this file's output,
``bench/results/memory.json``, in step). The native stack runs the same binaries at the same
versions, arranged as compose arranges them:

* two service replicas at production defaults on one PostgreSQL (shared_buffers and
  max_connections as compose sets them, pools of 8), balanced round robin by the load generator;
* the Collector (the distribution compose builds from the same manifest), Jaeger, Prometheus,
  VictoriaLogs (told the memory share it would derive from its container's limit);
* a Locust master and one worker, running the demo's load (20 users, the default mix, two held
  subscriptions) with **every** call traced, so that Jaeger's in-memory store fills up to its
  ``max_traces`` and the Collector carries the most it will under this load;
* every Grafana panel query run every 10 s (PromQL against Prometheus, LogsQL against
  VictoriaLogs), as an open dashboard does.

A peak is the most the kernel ever had resident: VmHWM (the high-water mark of RSS) for a
single process, read at the end, beside the largest RSS sampled every 0.25 s; for PostgreSQL,
whose processes share their buffers, the largest sum of PSS over all of its processes.
Grafana and nothing else is not measured here (no build of it runs on this machine): its limit
comes from a documented figure, named in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

from devkit.dev_credentials import write_dev_credentials
from devkit.postgres import PostgresCluster, server_bindir
from scripts.stack.components import TOOLS_DIR
from scripts.stack.native import NativeStack
from scripts.stack.plan import REPO, StackPlan, StackPorts
from user_service.listening import free_port

LOCUST = (sys.executable, "-m", "loadtest")  # as the image runs it
RESULTS = REPO / "bench/results/memory.json"
# As docker-compose.yml runs them (tests/stack/test_memory_budget.py checks these match).
POSTGRES_SETTINGS = ("shared_buffers=16MB", "max_connections=40")
POOL_SIZE = "8"
REPLICAS = 2
USERS = 20
SAMPLE_EVERY = 0.25
DASHBOARD_REFRESH = 10.0
VARIABLES = {"$__rate_interval": "1m", "$method": ".*", "$type": ".*", "$code": ".*"}
MIB = 2**20
# What cannot be measured on this machine, and where its figure comes from.
SOURCED = {
    "grafana": {
        "documented_mib": 512,
        "reported_peak_mib": 128,
        "source": (
            "Grafana's installation requirements: minimum recommended memory 512 MB (docs 10.1 and"
            " later); reported: ~124 MiB live, OOM-killed at a 128 MiB limit by spikes while"
            " provisioning dashboards (siutsin/otaru#2547)"
        ),
    }
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=120, help="length of the load run")
    # One run's peaks move by 5-10 % from run to run (measured: Jaeger 135.6 then 121 MiB, the
    # service 95.8 then 99.7 MiB); a limit rests on the largest of several.
    parser.add_argument("--runs", type=int, default=3, help="stack runs; a peak is the largest of them")
    parser.add_argument("--write", type=Path, default=RESULTS, help="where the figures go (JSON)")
    args = parser.parse_args()
    bindir = server_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL's server binaries are needed: apt-get install postgresql")
    peaks: dict[str, float] = {}
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as scratch:
            measured = measure(Path(scratch), bindir, args.seconds)
        figures = ", ".join(f"{name} {value / MIB:.1f}" for name, value in sorted(measured.items()))
        print(f"run {run} (MiB): {figures}", flush=True)
        for name, value in measured.items():
            peaks[name] = max(peaks.get(name, 0.0), value)
    result: dict[str, Any] = {
        "measured": datetime.now(UTC).strftime("%Y-%m-%d"),
        "how": (
            f"native stack as compose runs it ({REPLICAS} replicas on PostgreSQL, Locust master + 1 worker),"
            f" the demo's load ({USERS} users, default mix, 2 held subscriptions) for {args.seconds} s with"
            " every call traced, every dashboard panel queried every 10 s; peak = max(VmHWM, sampled RSS),"
            " PostgreSQL: max sampled sum of PSS over its processes;"
            f" each figure the largest of {args.runs} runs"
        ),
        "peak_mib": {name: round(value / MIB, 1) for name, value in sorted(peaks.items())},
        "sourced": SOURCED,
    }
    args.write.parent.mkdir(parents=True, exist_ok=True)
    args.write.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'component':<16}{'peak MiB':>10}")
    for name, value in result["peak_mib"].items():
        print(f"{name:<16}{value:>10.1f}")
    print(f"written to {args.write}")
    return 0


def measure(scratch: Path, bindir: Path, seconds: int) -> dict[str, float]:
    """Runs the stack and the load; the peak bytes of each compose service."""
    cluster = PostgresCluster(bindir, free_port(), settings=POSTGRES_SETTINGS).start()
    try:
        subprocess.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "users"],
            check=True,
            capture_output=True,
        )
        plan = StackPlan(scratch / "stack", StackPorts.free(), scratch / "credentials", replicas=REPLICAS)
        credentials = write_dev_credentials(plan.credentials_dir)
        service_env = {
            **credentials.server_env(),
            "USER_SERVICE_DATABASE_URL": cluster.database_url("users"),
            "USER_SERVICE_DATABASE_POOL_SIZE": POOL_SIZE,
        }
        stack = NativeStack(plan, service_env)
        _as_compose_runs_them(stack)
        stack.up(progress=lambda line: None)
        try:
            processes = {state.name: psutil.Process(state.pid) for state in stack.status() if state.pid}
            assert cluster._server is not None
            postgres = psutil.Process(cluster._server.pid)
            with _load(plan, credentials.secrets["admin"], seconds, scratch) as locust:
                processes.update(locust)
                sampler = _Sampler(processes, postgres)
                with sampler.running(), _dashboards_open(plan):
                    for process in locust.values():
                        process.wait()
            peaks = sampler.peaks()
            _print_go_heaps(plan)
        finally:
            stack.down()
    finally:
        cluster.stop()
    replicas = [peaks.pop(name) for name in list(peaks) if name.startswith("user-service")]
    return {**peaks, "user-service": max(replicas)}


def _as_compose_runs_them(stack: NativeStack) -> None:
    """The Go programs with the GOMEMLIMIT and GOGC compose gives them (a soft limit: their collector
    works harder near it, so their peak depends on it), and Prometheus as its image builds it,
    with every service discovery (the native stack's build leaves most out)."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    for name, component in list(stack.components.items()):
        if name not in compose:
            continue
        service = compose[name]
        env = dict(component.env)
        argv = list(component.argv)
        for variable in ("GOMEMLIMIT", "GOGC"):
            if variable in service.get("environment", {}):
                env[variable] = str(service["environment"][variable])
        # Natively there is no cgroup limit to read: what the containers derive from it is given.
        limit_mib = int(str(service["deploy"]["resources"]["limits"]["memory"]).rstrip("M"))
        if name == "victorialogs":
            # Its caches take -memory.allowedPercent (60 %) of the limit (VictoriaMetrics lib/memory).
            argv.append(f"-memory.allowedBytes={int(limit_mib * 0.6)}MiB")
        if name == "prometheus":
            ratio = next(
                float(flag.split("=")[1])
                for flag in service["command"]
                if flag.startswith("--auto-gomemlimit.ratio=")
            )
            env["GOMEMLIMIT"] = f"{int(limit_mib * ratio)}MiB"
            argv[0] = str(TOOLS_DIR / "prometheus-all-sd")
        stack.components[name] = replace(component, env=env, argv=argv)


def _print_go_heaps(plan: StackPlan) -> None:
    """The live heap of each Go program at the end: how much of its peak is data it holds."""
    sources = {
        "jaeger": (
            f"http://127.0.0.1:{plan.ports.jaeger_metrics}/metrics",
            "otelcol_process_runtime_heap_alloc_bytes",
        ),
        "otel-collector": (
            f"http://127.0.0.1:{plan.ports.collector_metrics}/metrics",
            "otelcol_process_runtime_heap_alloc_bytes",
        ),
        "prometheus": (f"{plan.prometheus_url}/metrics", "go_memstats_heap_alloc_bytes"),
    }
    for name, (url, metric) in sources.items():
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        match = re.search(rf"^{metric}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
        heap = f"{float(match.group(1)) / MIB:.1f} MiB" if match else "?"
        print(f"  {name}: Go heap in use at the end {heap}")


@contextmanager
def _load(
    plan: StackPlan, admin: tuple[str, str], seconds: int, scratch: Path
) -> Iterator[dict[str, psutil.Popen]]:
    """The seeded users, then a Locust master (headless) and one worker: {name: process}."""
    env = {
        **os.environ,
        "USER_SERVICE_TARGET": plan.target,
        "USER_SERVICE_CLIENT_ID": admin[0],
        "USER_SERVICE_CLIENT_SECRET": admin[1],
        "OTEL_EXPORTER_OTLP_ENDPOINT": plan.otlp_endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "1.0",
        "LOAD_SUBSCRIBERS": "2",
    }
    subprocess.run([sys.executable, "-m", "loadtest.seed"], env=env, check=True, timeout=120, cwd=REPO)
    master_port = free_port()
    common = [*LOCUST, "-f", "loadtest/locustfile.py"]
    log = open(scratch / "locust.log", "wb")  # noqa: SIM115 - both processes write it until they exit
    master = psutil.Popen(
        [
            *common,
            *("--master", "--headless", "--expect-workers", "1", "--only-summary"),
            *("--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port)),
            *("--users", str(USERS), "--spawn-rate", str(USERS), "--run-time", f"{seconds}s"),
            *("--stop-timeout", "5", "--exit-code-on-error", "0"),
        ],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    worker = psutil.Popen(
        [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield {"locust": master, "locust-worker": worker}
    finally:
        for process in (master, worker):
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=30)
        log.close()


class _Sampler:
    """Samples every process's RSS (and PostgreSQL's summed PSS) on a thread until stopped."""

    def __init__(self, processes: dict[str, psutil.Process], postgres: psutil.Process) -> None:
        self.processes = processes
        self.postgres = postgres
        self.sampled: dict[str, int] = dict.fromkeys([*processes, "postgres"], 0)
        self.high_water: dict[str, int] = {}
        self._stop = threading.Event()

    @contextmanager
    def running(self) -> Iterator[None]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            for name, process in self.processes.items():
                try:
                    self.sampled[name] = max(self.sampled[name], process.memory_info().rss)
                    self.high_water[name] = _vm_hwm(process.pid)
                except psutil.NoSuchProcess:  # Locust exits at the end of its run
                    continue
            self.sampled["postgres"] = max(self.sampled["postgres"], _tree_pss(self.postgres))

    def peaks(self) -> dict[str, float]:
        return {name: max(value, self.high_water.get(name, 0)) for name, value in self.sampled.items()}


def _vm_hwm(pid: int) -> int:
    """The process's peak resident set size (bytes), as the kernel tracks it."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def _tree_pss(root: psutil.Process) -> int:
    """Proportional set size of a process and all its children: shared memory counted once."""
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_full_info().pss
        except psutil.NoSuchProcess:
            continue
    return total


@contextmanager
def _dashboards_open(plan: StackPlan) -> Iterator[None]:
    """Every Grafana panel's query, over the last 15 minutes, every ``DASHBOARD_REFRESH`` s."""
    queries = _panel_queries()
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(DASHBOARD_REFRESH):
            end = time.time()
            for datasource, expr in queries:
                if datasource == "victorialogs":  # a logs panel: its newest lines, as the plugin asks
                    query = urllib.parse.urlencode({"query": expr, "start": int(end - 900), "limit": 100})
                    url = f"{plan.victorialogs_url}/select/logsql/query?{query}"
                else:
                    window = {"start": end - 900, "end": end, "step": 15}
                    query = urllib.parse.urlencode({"query": expr, **window})
                    url = f"{plan.prometheus_url}/api/v1/query_range?{query}"
                with urllib.request.urlopen(url, timeout=30) as answer:
                    answer.read()

    thread = threading.Thread(target=refresh, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _panel_queries() -> list[tuple[str, str]]:
    """(datasource uid, query) of every panel target, variables at "All"."""
    queries: list[tuple[str, str]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            expr = node.get("expr")
            if isinstance(expr, str) and expr:
                for variable, value in VARIABLES.items():
                    expr = expr.replace(variable, value)
                datasource = node.get("datasource")
                queries.append((datasource.get("uid", "") if isinstance(datasource, dict) else "", expr))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for board in sorted((REPO / "grafana/dashboards").glob("*.json")):
        walk(json.loads(board.read_text()))
    return queries


if __name__ == "__main__":
    raise SystemExit(main())
