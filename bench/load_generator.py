"""How much load one Locust core produces: ``python -m bench.load_generator`` (``make bench-load``).

Each case runs one Locust process (no ``--processes``) flat out against
``bench.constant_server``, the generator pinned to one core and the server to the other
when there are two. Requests (or streamed events) over a steady window are divided by the
CPU seconds the Locust process used in that same window — both taken inside Locust
(``bench/locust_window.py``) — giving load *per fully used core*, whatever else limits the
wall-clock rate. Cases run interleaved for several rounds; the median is reported, with ratios
to the documented pattern — only ratios within one run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from user_service.listening import free_port

# The documented pattern and the first model run in plain Locust (monkey-patched, grpc's blocking
# API under gevent); this project's users in `python -m loadtest` (grpc.aio on gevent's hub).
PLAIN_LOCUST = (str(Path(sys.executable).with_name("locust")), "-f", "bench/documented_pattern.py")
PROJECT_LOCUST = (sys.executable, "-m", "loadtest", "-f", "bench/locustfiles.py")
# The generator's own telemetry as `make load` runs it (request metrics over OTLP, 1 % of calls
# traced), and every call traced: what exporting costs the generator's core.
TELEMETRY = {"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}


@dataclass(frozen=True)
class Case:
    locust: tuple[str, ...]
    user: str
    users: int
    env: dict[str, str] = field(default_factory=dict)


CASES = {
    "documented pattern: interceptor, channel per user": Case(PLAIN_LOCUST, "DocumentedPatternUser", 16),
    "first model: gevent + blocking grpc, per process": Case(PLAIN_LOCUST, "GeventBlockingUser", 16),
    "this project: grpc.aio on gevent's hub": Case(PROJECT_LOCUST, "ProjectGetUser", 16),
    "  + its telemetry: metrics, 1 % traced": Case(
        PROJECT_LOCUST, "ProjectGetUser", 16, {**TELEMETRY, "OTEL_TRACES_SAMPLER_ARG": "0.01"}
    ),
    "  + its telemetry: metrics, every call traced": Case(
        PROJECT_LOCUST, "ProjectGetUser", 16, {**TELEMETRY, "OTEL_TRACES_SAMPLER_ARG": "1"}
    ),
    "this project: SubscribeUsers events read": Case(PROJECT_LOCUST, "ProjectSubscriber", 1),
}


@dataclass(frozen=True)
class Measurement:
    per_core: float  # requests (events) per CPU second of the generator
    cpu_share: float  # of one core, over the window
    p50_ms: float


def _pinned(core: int | None, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *command] if core is not None else command


def _measure(case: Case, port: int, otlp: str, args: argparse.Namespace, scratch: Path) -> Measurement:
    locust, user, users = case.locust, case.user, case.users
    prefix = scratch / f"{user}-{time.monotonic_ns()}"
    window = Path(f"{prefix}-window.json")
    env = {
        **os.environ,
        "USER_SERVICE_TARGET": f"127.0.0.1:{port}",
        "USER_SERVICE_CLIENT_ID": "bench",
        "USER_SERVICE_CLIENT_SECRET": "bench",
        "OTEL_SDK_DISABLED": "true",  # the generator's own cost, not its tracing's
        "LOAD_SUBSCRIBERS": "0",
        "BENCH_WINDOW": str(window),
        "BENCH_WARMUP": str(args.warmup),
        "BENCH_DURATION": str(args.duration),
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
        **case.env,
    }
    command = [
        *locust, user, "--headless", "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{args.warmup + args.duration + 2:g}s", "--host", f"127.0.0.1:{port}",
        "--csv", str(prefix), "--only-summary",
    ]  # fmt: skip
    subprocess.run(
        _pinned(args.generator_core, command), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        timeout=args.warmup + args.duration + 60, check=True,
    )  # fmt: skip
    measured = json.loads(window.read_text())
    if not measured["requests"]:
        raise RuntimeError(f"{user}: no requests in the measured window")
    row = "SubscribeUsers delivery" if user == "ProjectSubscriber" else "Aggregated"
    cpu = measured["cpu"]
    return Measurement(measured["requests"] / cpu, cpu / args.duration, _median_ms(prefix, row))


def _hold_streams(count: int, args: argparse.Namespace, scratch: Path) -> str:
    """One generator process holding ``count`` subscriptions, one event per second each:
    are the delivery latencies it records still honest (its greenlets not starved)?"""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.constant_server",
            str(port),
            "--event-interval",
            "1",
            "--threads",
            str(count + 16),
        ]
    )
    prefix = scratch / f"hold-{count}"
    env = {**os.environ, "USER_SERVICE_TARGET": f"127.0.0.1:{port}", "OTEL_SDK_DISABLED": "true"}
    env |= {"USER_SERVICE_CLIENT_ID": "bench", "USER_SERVICE_CLIENT_SECRET": "bench", "LOAD_SUBSCRIBERS": "0"}
    command = [
        *PROJECT_LOCUST, "ProjectSubscriber", "--headless", "--users", str(count),
        "--spawn-rate", str(max(50, count // 5)), "--run-time", "20s", "--host", f"127.0.0.1:{port}",
        "--csv", str(prefix), "--only-summary",
    ]  # fmt: skip
    try:
        time.sleep(1.5)
        locust = psutil.Popen(
            _pinned(args.generator_core, command),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        rss = 0
        while locust.poll() is None:
            rss = max(rss, locust.memory_info().rss)
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=10)
    with Path(f"{prefix}_stats.csv").open(newline="") as file:
        row = next(row for row in csv.DictReader(file) if row["Name"] == "SubscribeUsers delivery")
    return (
        f"{count:>5} streams held: {int(row['Request Count']):>6} events, delivery p50 {row['50%']} ms,"
        f" p99 {row['99%']} ms, generator RSS {rss / 2**20:.0f} MiB"
    )


def _median_ms(prefix: Path, name: str) -> float:
    with Path(f"{prefix}_stats.csv").open(newline="") as file:
        row = next(row for row in csv.DictReader(file) if row["Name"] == name)
    return float(row["50%"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8, help="seconds measured per case and round")
    parser.add_argument(
        "--warmup", type=float, default=4, help="seconds before measuring (start-up, spawning)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--held-streams", type=int, nargs="*", default=[100, 500, 1000])
    args = parser.parse_args()
    two_cores = (os.cpu_count() or 1) >= 2
    args.generator_core, server_core = (0, 1) if two_cores else (None, None)
    port = free_port()
    server = subprocess.Popen(
        _pinned(server_core, [sys.executable, "-m", "bench.constant_server", str(port)])
    )
    results: dict[str, list[Measurement]] = {case: [] for case in CASES}
    otlp_port = free_port()
    receiver = subprocess.Popen(  # where the telemetry cases export to, beside the server
        _pinned(server_core, [sys.executable, "-m", "devkit.otlp_receiver", "--port", str(otlp_port)]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        with tempfile.TemporaryDirectory(prefix="loadgen-bench-") as scratch:
            for round_number in range(1, args.rounds + 1):
                for name, case in CASES.items():
                    measured = _measure(case, port, f"http://127.0.0.1:{otlp_port}", args, Path(scratch))
                    results[name].append(measured)
                    print(
                        f"round {round_number} {name:<52} {measured.per_core:>8.0f}/core-s"
                        f"  cpu {measured.cpu_share:.0%}",
                        flush=True,
                    )
    finally:
        server.terminate()
        server.wait(timeout=10)
        receiver.send_signal(signal.SIGTERM)
        received = receiver.communicate(timeout=30)[0].strip().splitlines()[-1]
    print(f"OTLP receiver: {received}")
    with tempfile.TemporaryDirectory(prefix="loadgen-bench-") as scratch:
        held = [_hold_streams(count, args, Path(scratch)) for count in args.held_streams]
    baseline = statistics.median(m.per_core for m in results[next(iter(CASES))])
    pinning = "generator on core 0, server on core 1" if two_cores else "unpinned (one core)"
    print(f"\nper fully used Locust core, median of {args.rounds} rounds x {args.duration:g}s; {pinning}\n")
    print(f"{'case':<52} {'per core-s':>10} {'cpu used':>9} {'p50 ms':>7} {'vs documented':>14}")
    for name, measurements in results.items():
        per_core = statistics.median(m.per_core for m in measurements)
        cpu = statistics.median(m.cpu_share for m in measurements)
        p50 = statistics.median(m.p50_ms for m in measurements)
        if CASES[name].user == "ProjectSubscriber":  # flat out, events queue in the transport: lag is backlog
            print(f"{name:<52} {per_core:>10.0f} {cpu:>9.0%} {'-':>7} {'(events)':>14}")
        else:
            print(f"{name:<52} {per_core:>10.0f} {cpu:>9.0%} {p50:>7.1f} {per_core / baseline:>13.2f}x")
    print("\nsubscriptions one generator process holds (one event per second each, 20 s):")
    for line in held:
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
