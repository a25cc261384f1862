"""Scale-out on one machine: 1 vs 2 worker processes, on SQLite and on PostgreSQL.

    make bench-workers        # or: python -m bench.workers --duration 8 --rounds 3

Each subject is ``user-service serve --workers N`` at its production defaults (auth on — ghz
sends a token —, metrics, 10 % tracing, access log of errors and slow calls), loaded by ghz
over 8 connections (the kernel spreads *connections* across the workers sharing the port),
64 calls in flight: GetUser of an existing user, and CreateUser of a fresh one. Nothing is
pinned: the workers, ghz, the OTLP receiver and PostgreSQL share all cores, as they would on
a small host. PostgreSQL is a local cluster the benchmark starts (its own data directory).
Subjects run interleaved; the median of the rounds is reported, with the ratio of 2 workers
to 1 on the same store.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.telemetry_overhead import REPO, Load, Result, Subject, _measure, write_protoset
from devkit.postgres import PostgresCluster, server_bindir
from user_service.listening import free_port

CONNECTIONS = 8
CALLS = {
    "GetUser": '{"id": 1}',
    "CreateUser": '{"user": {"name": "Bench", "email": "{{newUUID}}@example.com"}}',
}


def _subjects(postgres_url: str | None) -> dict[str, Subject]:
    stores: dict[str, dict[str, str]] = {"SQLite": {}} | (
        {"PostgreSQL": {"USER_SERVICE_DATABASE_URL": postgres_url}} if postgres_url else {}
    )
    return {
        f"{store}, {workers} worker{'s' if workers > 1 else ''}": Subject(
            env={**env, "USER_SERVICE_WORKERS": str(workers), "USER_SERVICE_LOG_LEVEL": "WARNING"}
        )
        for store, env in stores.items()
        for workers in (1, 2)
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8, help="seconds measured per subject and round")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--calls", nargs="*", default=list(CALLS), choices=list(CALLS))
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    ghz = shutil.which("ghz") or str(Path(os.environ.get("TOOLS_DIR", "")) / "ghz")
    bindir = None if args.no_postgres else server_bindir()
    cluster = PostgresCluster(bindir, free_port()).start() if bindir else None
    receiver_port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "devkit.otlp_receiver", "--port", str(receiver_port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    scratch = tempfile.TemporaryDirectory(prefix="user-service-bench-")
    try:
        subjects = _subjects(cluster.url if cluster else None)
        protoset = write_protoset(scratch.name)
        results: dict[tuple[str, str], list[Result]] = {}
        for round_ in range(1, args.rounds + 1):
            for call in args.calls:
                load = Load(ghz, protoset, pinned=False, method=call, data=CALLS[call])
                for name, subject in subjects.items():
                    result = _measure(
                        subject, f"http://127.0.0.1:{receiver_port}", load, args, connections=CONNECTIONS
                    )
                    results.setdefault((call, name), []).append(result)
                    print(
                        f"round {round_} {call:<10} {name:<24} {result.rps:8.0f} rps"
                        f"  p99 {result.p99_ms:7.2f} ms  server {result.server_cores:4.2f} cores",
                        flush=True,
                    )
    finally:
        scratch.cleanup()
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=30)
        if cluster is not None:
            cluster.stop()
    print(
        f"\n{CONNECTIONS} connections, {args.concurrency} in flight, median of {args.rounds} rounds"
        f" x {args.duration:g} s, {os.cpu_count()} cores, nothing pinned\n"
    )
    print(_table(results))
    return 0


def _table(results: dict[tuple[str, str], list[Result]]) -> str:
    """rps, latency, the cores the server's processes used, rps per core used, and the ratios
    of 2 workers to 1: throughput, and cores the server could get next to ghz and the rest."""
    lines = [
        f"{'call':<10} {'server':<24} {'rps':>7} {'p50 ms':>7} {'p99 ms':>7} {'cores':>6} {'rps/core':>8}"
        "  2 vs 1: rps  cores"
    ]
    for (call, name), rounds in results.items():
        rps = statistics.median(r.rps for r in rounds)
        cores = statistics.median(r.server_cores for r in rounds)
        ratios = ""
        if name.endswith("2 workers"):
            single = results[(call, name.replace("2 workers", "1 worker"))]
            ratios = (
                f"{rps / statistics.median(r.rps for r in single):11.2f}x"
                f" {cores / statistics.median(r.server_cores for r in single):5.2f}x"
            )
        p50 = statistics.median(r.p50_ms for r in rounds)
        p99 = statistics.median(r.p99_ms for r in rounds)
        figures = f"{rps:7.0f} {p50:7.2f} {p99:7.2f} {cores:6.2f} {rps / cores:8.0f}"
        lines.append(f"{call:<10} {name:<24} {figures} {ratios}".rstrip())
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
