"""Unary throughput and latency of one server with and without telemetry, as ratios to bare.

    make bench            # or: python -m bench.telemetry_overhead --duration 8 --rounds 3

Each mode is a fresh server process (same code, configured through the environment) on
loopback, loaded by ghz (Go, so the load generator costs little of the server's CPU) with
GetUser calls. Modes run interleaved for several rounds and the median is reported, because
on a small noisy machine only ratios measured in one run mean anything. Spans go over
OTLP to a receiver process, so export costs what it costs in production.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from tests.support.processes import free_port
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("user-service"))

# Authentication is off in every mode: this measures telemetry, and ghz sends no token.
QUIET = {
    "USER_SERVICE_ACCESS_LOG": "false",
    "USER_SERVICE_LOG_LEVEL": "WARNING",
    "USER_SERVICE_AUTH_ENABLED": "false",
}
MODES: dict[str, dict[str, str]] = {
    "bare": {**QUIET, "USER_SERVICE_METRICS_ENABLED": "false", "OTEL_SDK_DISABLED": "true"},
    "metrics": {**QUIET, "OTEL_SDK_DISABLED": "true"},
    "tracing 100% + metrics": {**QUIET, "OTEL_TRACES_SAMPLER": "always_on"},
    "tracing 10% + metrics": {
        **QUIET,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
    "tracing 0% + metrics": {**QUIET, "OTEL_TRACES_SAMPLER": "always_off"},
    "tracing 100% + metrics + access log": {
        "USER_SERVICE_AUTH_ENABLED": "false",
        "USER_SERVICE_LOG_LEVEL": "INFO",
        "OTEL_TRACES_SAMPLER": "always_on",
    },
}


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float


def _wait_serving(target: str) -> None:
    give_up = time.monotonic() + 20
    with grpc.insecure_channel(target) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        while True:
            try:
                stub.CreateUser(
                    user_pb2.CreateUserRequest(user=user_pb2.User(name="Bench", email="bench@example.com")),
                    timeout=1,
                )
                return
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.ALREADY_EXISTS:
                    return
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.1)


def _protoset(directory: str) -> str:
    """The API's descriptors for ghz (whose parser predates proto3 `optional`)."""
    path = f"{directory}/user.protoset"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO / 'proto'}", "--include_imports",
         f"--descriptor_set_out={path}", str(REPO / "proto/user/v1/user.proto")],
        check=True,
    )  # fmt: skip
    return path


@dataclass
class Load:
    ghz: str
    protoset: str


def _ghz(load: Load, target: str, seconds: float, concurrency: int) -> Result:
    command = [
        load.ghz,
        "--insecure",
        "--protoset", load.protoset,
        "--call", "user.v1.UserService.GetUser",
        "--data", '{"id": 1}',
        "--concurrency", str(concurrency),
        "--connections", "1",
        "--duration", f"{seconds:g}s",
        "--format", "json",
        target,
    ]  # fmt: skip
    report = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    # ghz cuts the calls still in flight when the duration ends (and reports some twice).
    errors = {
        message: count
        for message, count in (report.get("errorDistribution") or {}).items()
        if "transport is closing" not in message and "Canceled" not in message
    }
    cut = sum((report.get("errorDistribution") or {}).values()) - sum(errors.values())
    if errors or cut > 2 * concurrency:
        raise RuntimeError(f"calls failed: {report.get('errorDistribution')}")
    percentiles = {entry["percentage"]: entry["latency"] / 1e6 for entry in report["latencyDistribution"]}
    return Result(rps=report["rps"], p50_ms=percentiles[50], p99_ms=percentiles[99])


def _measure(mode_env: dict[str, str], otlp_endpoint: str, load: Load, args: argparse.Namespace) -> Result:
    with tempfile.TemporaryDirectory(prefix="user-service-bench-") as data:
        port = free_port()
        env = {
            **os.environ,
            **mode_env,
            "USER_SERVICE_DATABASE_URL": f"sqlite:///{data}/users.db",
            "USER_SERVICE_METRICS_PORT": "0",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
        }
        server = subprocess.Popen(
            [CLI, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            target = f"127.0.0.1:{port}"
            _wait_serving(target)
            _ghz(load, target, args.warmup, args.concurrency)
            return _ghz(load, target, args.duration, args.concurrency)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8, help="seconds measured per mode and round")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load before measuring")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--modes", nargs="*", default=list(MODES), help="subset of modes (bare is always run)"
    )
    args = parser.parse_args()
    ghz = shutil.which("ghz") or str(Path(os.environ.get("TOOLS_DIR", "")) / "ghz")
    modes = ["bare", *(m for m in args.modes if m != "bare")]
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "scripts.otlp_receiver", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    results: dict[str, list[Result]] = {mode: [] for mode in modes}
    scratch = tempfile.TemporaryDirectory(prefix="user-service-bench-")
    load = Load(ghz, _protoset(scratch.name))
    try:
        for round_ in range(1, args.rounds + 1):
            for mode in modes:
                result = _measure(MODES[mode], f"http://127.0.0.1:{port}", load, args)
                results[mode].append(result)
                print(
                    f"round {round_} {mode:<38} {result.rps:8.0f} rps  p50 {result.p50_ms:6.2f} ms",
                    flush=True,
                )
    finally:
        scratch.cleanup()
        receiver.send_signal(signal.SIGTERM)
        spans_line = receiver.communicate(timeout=30)[0].strip().splitlines()[-1]
    _report(results, args, spans_line)
    return 0


def _report(results: dict[str, list[Result]], args: argparse.Namespace, spans_line: str) -> None:
    bare = statistics.median(r.rps for r in results["bare"])
    print(
        f"\nGetUser, {args.concurrency} concurrent calls on 1 connection, median of {args.rounds} rounds "
        f"x {args.duration:g}s (OTLP receiver: {spans_line})\n"
    )
    print(f"{'mode':<38} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'throughput vs bare':>20}")
    for mode, runs in results.items():
        rps = statistics.median(r.rps for r in runs)
        p50 = statistics.median(r.p50_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        print(f"{mode:<38} {rps:8.0f} {p50:8.2f} {p99:8.2f} {rps / bare:19.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
