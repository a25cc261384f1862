"""Unary hot path: the service beside the grpc.aio and sync-grpc floors, bare and with
telemetry, as ratios to the grpc.aio floor and to the bare service.

    make bench            # or: python -m bench.telemetry_overhead --duration 8 --rounds 3

Each subject is a fresh server process on loopback, loaded by ghz (Go, so the load generator
costs little) with GetUser of an existing user: 32 calls in flight on one connection. With two
or more cores the server is pinned to core 0 and ghz (and the OTLP receiver spans go to) to
core 1, so they do not fight over one. Subjects run interleaved for several rounds and the
median is reported: on a small noisy machine only ratios measured in one run mean anything.
``--write FILE`` also writes the table as Markdown (make bench: bench/results/unary.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devkit.dev_credentials import DevCredentials, write_dev_credentials
from scripts.stack.probes import login
from user_service.client import bearer
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.listening import free_port

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("user-service"))
PINNED = (os.cpu_count() or 1) >= 2
SERVER_CPU, LOAD_CPU = "0", "1"

QUIET = {"USER_SERVICE_ACCESS_LOG": "false", "USER_SERVICE_LOG_LEVEL": "WARNING"}
BARE = {
    **QUIET,
    "USER_SERVICE_AUTH_ENABLED": "false",
    "USER_SERVICE_METRICS_ENABLED": "false",
    "OTEL_SDK_DISABLED": "true",
}


@dataclass(frozen=True)
class Subject:
    """A server to measure: a floor (``module``) or the service with ``env`` on top of the
    production defaults (auth on, a token for ghz; access log; metrics; tracing)."""

    module: str | None = None
    arguments: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def authenticated(self) -> bool:
        return self.module is None and self.env.get("USER_SERVICE_AUTH_ENABLED") != "false"


SUBJECTS: dict[str, Subject] = {
    "grpc.aio floor": Subject(module="bench.aio_floor"),
    "grpc.aio floor + SQLite point read": Subject(module="bench.aio_floor", arguments=("--sqlite-read",)),
    "sync grpc floor": Subject(module="bench.constant_server"),
    "service, bare": Subject(env=BARE),
    "service, metrics only": Subject(
        env={**QUIET, "USER_SERVICE_AUTH_ENABLED": "false", "OTEL_SDK_DISABLED": "true"}
    ),
    "service, production defaults": Subject(),
    # The stack's replicas read the fault flags file; every flag off costs one snapshot read a call.
    "service, defaults + flags off": Subject(
        env={"USER_SERVICE_FLAGS_FILE": str(REPO / "flags/demo.flagd.json")}
    ),
    "service, defaults + 100% sampling": Subject(env={"OTEL_TRACES_SAMPLER": "always_on"}),
    # The price of a log line, and of exporting it: an access line for every call (the defaults
    # write one only for failed and slow calls), exported over OTLP or kept on stderr.
    "service, all calls logged": Subject(env={"USER_SERVICE_ACCESS_LOG": "all"}),
    "service, all calls logged, no OTLP": Subject(
        env={"USER_SERVICE_ACCESS_LOG": "all", "OTEL_LOGS_EXPORTER": "none"}
    ),
}
FLOOR = "grpc.aio floor"


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    server_cores: float = 0.0  # CPU the server's processes used while measured, in cores


def _wait_serving(target: str, token: str | None) -> None:
    """Listening, then the user GetUser asks for exists (the floors answer any id)."""
    wait_until_listening(target)
    metadata = bearer(token)
    request = user_pb2.CreateUserRequest(user=user_pb2.User(name="Bench", email="bench@example.com"))
    with grpc.insecure_channel(target) as channel:
        try:
            user_pb2_grpc.UserServiceStub(channel).CreateUser(request, metadata=metadata, timeout=5)
        except grpc.RpcError as error:
            if error.code() not in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.UNIMPLEMENTED):
                raise


def _health(channel: grpc.Channel) -> bool:
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
    except grpc.RpcError as error:
        return error.code() == grpc.StatusCode.UNIMPLEMENTED  # the floors serve no health
    return True


def write_protoset(directory: str) -> str:
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
    """How ghz loads a server: GetUser of user 1 by default, on core 1 when ``pinned``."""

    ghz: str
    protoset: str
    pinned: bool = PINNED
    method: str = "GetUser"
    data: str = '{"id": 1}'


def _ghz(
    load: Load, target: str, seconds: float, concurrency: int, token: str | None, *, connections: int = 1
) -> Result:
    command = [
        *(("taskset", "-c", LOAD_CPU) if load.pinned else ()),
        load.ghz,
        "--insecure",
        "--protoset", load.protoset,
        "--call", f"user.v1.UserService.{load.method}",
        "--data", load.data,
        "--concurrency", str(concurrency),
        "--connections", str(connections),
        "--duration", f"{seconds:g}s",
        "--format", "json",
        *(("--metadata", json.dumps({"authorization": f"Bearer {token}"})) if token else ()),
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


def _measure(
    subject: Subject, otlp_endpoint: str, load: Load, args: argparse.Namespace, *, connections: int = 1
) -> Result:
    with tempfile.TemporaryDirectory(prefix="user-service-bench-") as data:
        port = free_port()
        credentials: DevCredentials | None = None
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint, "USER_SERVICE_METRICS_PORT": "0"}
        if subject.module is not None:
            command = [sys.executable, "-m", subject.module, str(port), *subject.arguments]
        else:
            command = [CLI, "serve", "--port", str(port)]
            # One server process (pinned to one core) unless the subject asks for workers.
            env |= {
                "USER_SERVICE_DATABASE_URL": f"sqlite:///{data}/users.db",
                "USER_SERVICE_WORKERS": "1",
                **subject.env,
            }
            if subject.authenticated:
                credentials = write_dev_credentials(Path(data) / "credentials")
                env |= credentials.server_env()
        pin = ("taskset", "-c", SERVER_CPU) if load.pinned else ()
        server = subprocess.Popen(
            [*pin, *command], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            target = f"127.0.0.1:{port}"
            wait_until_listening(target)
            token = login(target, *credentials.secrets["admin"]) if credentials is not None else None
            _wait_serving(target, token)
            _ghz(load, target, args.warmup, args.concurrency, token, connections=connections)
            cpu_before, started = _cpu_seconds(server.pid), time.monotonic()
            result = _ghz(load, target, args.duration, args.concurrency, token, connections=connections)
            result.server_cores = (_cpu_seconds(server.pid) - cpu_before) / (time.monotonic() - started)
            return result
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process and all its descendants (the workers of ``--workers``)."""
    root = psutil.Process(pid)
    total = 0.0
    for process in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def wait_until_listening(target: str) -> None:
    give_up = time.monotonic() + 20
    with grpc.insecure_channel(target) as channel:
        while not _health(channel):
            if time.monotonic() > give_up:
                raise RuntimeError(f"{target} did not start")
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8, help="seconds measured per subject and round")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load before measuring")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--subjects",
        nargs="*",
        default=list(SUBJECTS),
        help="subset (the aio floor and the bare service always run)",
    )
    parser.add_argument("--write", type=Path, help="also write the table as Markdown to this file")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure the production defaults of the service at this git revision (an A/B in one run)",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as cleanup:
        if args.baseline:
            SUBJECTS[f"production defaults @ {args.baseline}"] = cleanup.enter_context(
                _baseline(args.baseline)
            )
            args.subjects.append(f"production defaults @ {args.baseline}")
        return _run(args)


@contextlib.contextmanager
def _baseline(revision: str) -> Iterator[Subject]:
    """The service's production defaults as they were at ``revision``: its sources checked out
    into a temporary worktree (with this tree's generated code, which git does not hold), ahead
    of the installed package on the server's PYTHONPATH."""
    with tempfile.TemporaryDirectory(prefix="user-service-baseline-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], cwd=REPO, check=True)
        try:
            shutil.copytree(
                REPO / "service/user_service/gen", tree / "service/user_service/gen", dirs_exist_ok=True
            )
            yield Subject(env={"PYTHONPATH": str(tree / "service")})
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=True)


def _run(args: argparse.Namespace) -> int:
    ghz = shutil.which("ghz") or str(Path(os.environ.get("TOOLS_DIR", "")) / "ghz")
    names = list(dict.fromkeys([FLOOR, "service, bare", *args.subjects]))
    port = free_port()
    receiver = subprocess.Popen(
        [
            *(("taskset", "-c", LOAD_CPU) if PINNED else ()),
            sys.executable,
            "-m",
            "devkit.otlp_receiver",
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    results: dict[str, list[Result]] = {name: [] for name in names}
    scratch = tempfile.TemporaryDirectory(prefix="user-service-bench-")
    load = Load(ghz, write_protoset(scratch.name))
    try:
        for round_ in range(1, args.rounds + 1):
            for name in names:
                result = _measure(SUBJECTS[name], f"http://127.0.0.1:{port}", load, args)
                results[name].append(result)
                print(
                    f"round {round_} {name:<36} {result.rps:8.0f} rps  p99 {result.p99_ms:6.2f} ms",
                    flush=True,
                )
    finally:
        scratch.cleanup()
        receiver.send_signal(signal.SIGTERM)
        spans_line = receiver.communicate(timeout=30)[0].strip().splitlines()[-1]
    table = _table(results)
    placement = "server pinned to core 0, ghz to core 1" if PINNED else "unpinned (one core)"
    setup = (
        f"GetUser, {args.concurrency} in flight on one connection,"
        f" median of {args.rounds} rounds x {args.duration:g} s, {placement}"
    )
    print(f"\n{setup}; OTLP receiver: {spans_line}\n\n{table}")
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(f"{setup} ({time.strftime('%Y-%m-%d')}, `make bench`).\n\n```\n{table}\n```\n")
    return 0


def _table(results: dict[str, list[Result]]) -> str:
    floor = statistics.median(r.rps for r in results[FLOOR])
    bare = statistics.median(r.rps for r in results["service, bare"])
    lines = [f"{'server':<36} {'rps':>7} {'p50 ms':>7} {'p99 ms':>7} {'vs aio floor':>13} {'vs bare':>8}"]
    for name, runs in results.items():
        rps = statistics.median(r.rps for r in runs)
        p50 = statistics.median(r.p50_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        vs_bare = f"{rps / bare:7.2f}x" if SUBJECTS[name].module is None else " " * 8
        lines.append(f"{name:<36} {rps:7.0f} {p50:7.2f} {p99:7.2f} {rps / floor:12.2f}x {vs_bare}".rstrip())
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
