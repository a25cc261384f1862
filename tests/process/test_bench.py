"""The benchmarks run end to end (smoke runs: they assert no speed, only a report)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]


def _report(module: str, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def test_benchmark_reports_ratios_to_the_grpc_aio_floor(tmp_path: Path) -> None:
    require_tool("ghz")
    table = tmp_path / "unary.md"
    report = _report(
        "bench.telemetry_overhead",
        *("--duration", "1", "--warmup", "0.5", "--rounds", "1", "--write", str(table)),
        *("--subjects", "sync grpc floor", "service, production defaults"),
    )
    assert any(line.startswith("grpc.aio floor") and "1.00x" in line for line in report)
    assert any(line.startswith("service, bare") and line.endswith("1.00x") for line in report)
    assert any(line.startswith("service, production defaults") for line in report), (
        "auth on: ghz sent a token"
    )
    assert any(line.startswith("sync grpc floor") for line in report)
    assert "service, production defaults" in table.read_text()


def test_fanout_benchmark_reports_deliveries_latency_and_memory() -> None:
    report = "\n".join(
        _report("bench.fanout", *("--subscribers", "20", "--writes", "20", "--duration", "1", "--drain", "1"))
    )
    assert "events delivered         400 of 400" in report, "every change reached every subscriber"
    assert "latency at the client" in report
    assert "KiB per subscriber" in report


def test_load_generator_benchmark_reports_ratios_to_the_documented_pattern() -> None:
    report = _report(
        "bench.load_generator",
        *("--duration", "3", "--warmup", "3", "--rounds", "1", "--held-streams", "20"),
    )
    assert any(line.startswith("documented pattern") and line.endswith("1.00x") for line in report)
    assert any(
        line.startswith("this project: grpc.aio on gevent's hub") and line.endswith("x") for line in report
    )
    assert any(line.startswith("  + its telemetry: metrics, 1 % traced") for line in report)
    assert any(line.startswith("OTLP receiver: received") for line in report), "the telemetry cases exported"
    assert any("20 streams held" in line for line in report)


def test_fidelity_benchmark_sets_locust_beside_ghz_and_the_server() -> None:
    require_tool("ghz")
    report = _report(
        "bench.load_fidelity", *("--rate", "100", "--users", "10", "--seconds", "3", "--rounds", "1")
    )
    for client in ("ghz", "Locust, phased users", "Locust, constant_throughput"):
        assert any(line.startswith(client) for line in report), client
    assert any(line.startswith("Locust (phased users) vs ghz: p50") for line in report)


def test_postgres_driver_benchmark_compares_asyncpg_with_psycopg(postgres_cluster: object) -> None:
    report = "\n".join(_report("bench.postgres_drivers", "--operations", "50", "--rounds", "1"))
    for label in ("asyncpg point read", "psycopg 3 point read", "asyncpg write", "psycopg 3 write"):
        assert label in report
    assert "µs CPU per op" in report


def test_workers_benchmark_reports_the_ratio_of_two_workers_to_one() -> None:
    require_tool("ghz")
    report = _report(
        "bench.workers",
        *("--duration", "1", "--warmup", "0.5", "--rounds", "1", "--calls", "GetUser", "--no-postgres"),
    )
    assert any(line.startswith("GetUser    SQLite, 1 worker") for line in report)
    two = next(line for line in report if line.startswith("GetUser    SQLite, 2 workers"))
    assert two.endswith("x"), "rps and cores of 2 workers against 1"
