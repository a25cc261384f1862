"""Whose latency does Locust report? ``python -m bench.load_fidelity`` (part of ``make bench-load``).

One service process with the production defaults but tracing (auth on, metrics, access log of
failed and slow calls; ``OTEL_SDK_DISABLED``: no spans on either side) pinned to core 0; the
load generator pinned to core 1. The same fixed rate of ``GetUser`` of seeded users comes from:

* **Locust** — ``loadtest/locustfile.py``'s ``CrudUser`` with ``LOAD_MIX=get=1``, one process,
  ``--users`` x ``LOAD_USER_RPS`` calls per second, paced as the project paces its users (each
  at a phase of its own, ``loadtest.pacing``) and as Locust's ``constant_throughput`` does
  (``LOAD_PACING=locust``: users in step);
* **ghz** — ``--rps`` at the same rate, as many calls in flight as Locust has users: a Go
  client whose own share is a small known quantity.

For each, its p50/p99 beside the p50/p99 of the same calls inside the server (its
``grpc_server_handling_seconds`` histogram, the difference of two scrapes, interpolated as
``histogram_quantile`` does). Runs are interleaved for ``--rounds``; medians are reported, and
the goal of issue 19: Locust p50 ≤ ghz p50 + 0.5 ms, p99 ≤ ghz p99 + 2 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from bench.telemetry_overhead import CLI, REPO, wait_until_listening, write_protoset
from devkit.dev_credentials import write_dev_credentials
from loadtest.seed import seed
from loadtest.settings import LoadSettings
from scripts.stack.probes import login
from user_service.config import ClientSettings
from user_service.listening import free_port

LOCUST = (sys.executable, "-m", "loadtest")
PINNED = (os.cpu_count() or 1) >= 2
SERVER_CPU, LOAD_CPU = "0", "1"
METHOD = 'grpc_method="GetUser"'
LOCUST_CASES = {"Locust, phased users": "phased", "Locust, constant_throughput": "locust"}


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    rate: float  # calls per second the client completed


@dataclass(frozen=True)
class Run:
    client: Latency
    server: Latency

    @property
    def p50_added_ms(self) -> float:
        return self.client.p50_ms - self.server.p50_ms

    @property
    def p99_added_ms(self) -> float:
        return self.client.p99_ms - self.server.p99_ms


class Histogram:
    """The server's GetUser handling-time buckets, read from its /metrics."""

    def __init__(self, url: str) -> None:
        self._url = url

    def read(self) -> dict[float, float]:
        text = urllib.request.urlopen(self._url, timeout=5).read().decode()
        buckets: dict[float, float] = {}
        for line in text.splitlines():
            if line.startswith("grpc_server_handling_seconds_bucket{") and METHOD in line:
                labels, value = line.rsplit(" ", 1)
                bound = labels.split('le="', 1)[1].split('"', 1)[0]
                buckets[float(bound)] = buckets.get(float(bound), 0.0) + float(value)
        return buckets

    @staticmethod
    def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
        """Prometheus's ``histogram_quantile`` over the calls between two reads, in ms."""
        bounds = sorted(after)
        counts = [after[b] - before.get(b, 0.0) for b in bounds]
        rank, lower, below = q * counts[-1], 0.0, 0.0
        for bound, cumulative in zip(bounds, counts, strict=True):
            if cumulative >= rank:
                if bound == float("inf"):
                    return lower * 1000
                share = (rank - below) / (cumulative - below) if cumulative > below else 0.0
                return (lower + (bound - lower) * share) * 1000
            lower, below = bound, cumulative
        return lower * 1000


def _pinned(command: list[str]) -> list[str]:
    return ["taskset", "-c", LOAD_CPU, *command] if PINNED else command


def _locust(
    pacing: str, target: str, env: dict[str, str], args: argparse.Namespace, scratch: Path
) -> Latency:
    prefix = scratch / f"locust-{pacing}-{time.monotonic_ns()}"
    users = args.users
    env = {
        **env,
        "LOAD_PACING": pacing,
        "LOAD_MIX": "get=1",
        "LOAD_SUBSCRIBERS": "0",
        "LOAD_USER_RPS": f"{args.rate / users:g}",
    }
    command = [
        *LOCUST, "-f", str(REPO / "loadtest/locustfile.py"), "CrudUser", "--headless", "--only-summary",
        "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{args.seconds:g}s",
        "--host", target, "--csv", str(prefix), "--reset-stats",
    ]  # fmt: skip
    subprocess.run(
        _pinned(command), env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        timeout=args.seconds + 60, check=True,
    )  # fmt: skip
    with Path(f"{prefix}_stats.csv").open(newline="") as file:
        row = next(row for row in csv.DictReader(file) if row["Name"] == "GetUser")
    if int(row["Failure Count"]):
        raise RuntimeError(f"Locust ({pacing}): {row['Failure Count']} GetUser calls failed")
    return Latency(float(row["50%"]), float(row["99%"]), float(row["Requests/s"]))


def _ghz(target: str, token: str, protoset: str, args: argparse.Namespace) -> Latency:
    ghz = shutil.which("ghz") or str(Path(os.environ.get("TOOLS_DIR", "")) / "ghz")
    command = [
        ghz, "--insecure", "--protoset", protoset, "--call", "user.v1.UserService.GetUser",
        "--data", '{"id": 1}', "--rps", str(args.rate), "--concurrency", str(args.users),
        "--connections", "1", "--duration", f"{args.seconds:g}s", "--format", "json",
        "--metadata", json.dumps({"authorization": f"Bearer {token}"}), target,
    ]  # fmt: skip
    report = json.loads(subprocess.run(_pinned(command), capture_output=True, text=True, check=True).stdout)
    percentiles = {entry["percentage"]: entry["latency"] / 1e6 for entry in report["latencyDistribution"]}
    return Latency(percentiles[50], percentiles[99], report["rps"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=500, help="GetUser calls per second")
    parser.add_argument("--users", type=int, default=50, help="Locust users (ghz: calls in flight)")
    parser.add_argument("--seconds", type=float, default=20, help="per run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[Run]] = {name: [] for name in ["ghz", *LOCUST_CASES]}
    with tempfile.TemporaryDirectory(prefix="load-fidelity-") as scratch, _service(Path(scratch)) as service:
        for round_ in range(1, args.rounds + 1):
            for name, runs in results.items():
                before = service.histogram.read()
                if name == "ghz":
                    client = _ghz(service.target, service.token, service.protoset, args)
                else:
                    client = _locust(
                        LOCUST_CASES[name], service.target, service.client_env, args, Path(scratch)
                    )
                after = service.histogram.read()
                served = Latency(
                    Histogram.quantile(0.5, before, after), Histogram.quantile(0.99, before, after), 0
                )
                runs.append(Run(client, served))
                print(
                    f"round {round_} {name:<28} {client.rate:4.0f}/s  p50 {client.p50_ms:5.2f} ms"
                    f" (server {served.p50_ms:.2f})  p99 {client.p99_ms:5.2f} ms"
                    f" (server {served.p99_ms:.2f})",
                    flush=True,
                )
    print(_table(results, args))
    return 0


@dataclass(frozen=True)
class Service:
    target: str
    token: str
    client_env: dict[str, str]  # for Locust: the target, the admin's credentials
    protoset: str  # for ghz
    histogram: Histogram


@contextlib.contextmanager
def _service(scratch: Path) -> Iterator[Service]:
    """The service with its production defaults but tracing, on core 0, seeded with the users
    Locust reads (ghz asks for user 1, one of them)."""
    port, metrics_port = free_port(), free_port()
    credentials = write_dev_credentials(scratch / "credentials")
    target = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "USER_SERVICE_DATABASE_URL": f"sqlite:///{scratch}/users.db",
        "USER_SERVICE_WORKERS": "1",
        "USER_SERVICE_METRICS_PORT": str(metrics_port),
        "OTEL_SDK_DISABLED": "true",
        **credentials.server_env(),
    }
    server = subprocess.Popen(
        [*(("taskset", "-c", SERVER_CPU) if PINNED else ()), CLI, "serve", "--port", str(port)],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_listening(target)
        client_id, secret = credentials.secrets["admin"]
        as_admin = {"USER_SERVICE_CLIENT_ID": client_id, "USER_SERVICE_CLIENT_SECRET": secret}
        seed(ClientSettings(target=target), LoadSettings.model_validate(as_admin))
        yield Service(
            target=target,
            token=login(target, client_id, secret),
            client_env={**env, **credentials.client_env("admin"), "USER_SERVICE_TARGET": target},
            protoset=write_protoset(str(scratch)),
            histogram=Histogram(f"http://127.0.0.1:{metrics_port}/metrics"),
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def _table(results: dict[str, list[Run]], args: argparse.Namespace) -> str:
    """Medians per client: its p50/p99, the server's for the same calls, and what the client added."""
    lines = [
        f"\nGetUser at {args.rate}/s, {args.users} users (ghz: in flight), median of {args.rounds}"
        f" rounds x {args.seconds:g} s; generator on core {LOAD_CPU}, service on core {SERVER_CPU}; ms",
        f"{'client':<28} {'rate':>5} {'p50':>6} {'server':>7} {'added':>6}"
        f" {'p99':>6} {'server':>7} {'added':>6}",
    ]
    for name, runs in results.items():
        rate = statistics.median(r.client.rate for r in runs)
        columns = (
            "client.p50_ms",
            "server.p50_ms",
            "p50_added_ms",
            "client.p99_ms",
            "server.p99_ms",
            "p99_added_ms",
        )
        figures = [statistics.median(map(attrgetter(column), runs)) for column in columns]
        widths = (6, 7, 6) * 2
        lines.append(
            f"{name:<28} {rate:5.0f} " + " ".join(f"{v:{w}.2f}" for v, w in zip(figures, widths, strict=True))
        )
    ghz, phased = results["ghz"], results["Locust, phased users"]
    gaps = [
        statistics.median(map(attrgetter(column), phased)) - statistics.median(map(attrgetter(column), ghz))
        for column in ("client.p50_ms", "client.p99_ms")
    ]
    lines.append(
        f"\nLocust (phased users) vs ghz: p50 {gaps[0]:+.2f} ms (goal <= +0.5),"
        f" p99 {gaps[1]:+.2f} ms (goal <= +2)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
