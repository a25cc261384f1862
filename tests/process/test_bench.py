"""The overhead benchmark runs end to end (a smoke run: it asserts no speed, only a report)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_reports_ratios_to_bare() -> None:
    require_tool("ghz")
    smoke = [
        "--duration",
        "1",
        "--warmup",
        "0.5",
        "--rounds",
        "1",
        "--modes",
        "metrics",
        "tracing 100% + metrics",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "bench.telemetry_overhead", *smoke],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.stdout.splitlines()
    assert any(line.startswith("bare") and line.endswith("1.00x") for line in report)
    assert any(line.startswith("tracing 100% + metrics") for line in report)


def test_load_generator_benchmark_reports_ratios_to_the_documented_pattern() -> None:
    # Locust writes its statistics history once a second: a window of a few seconds.
    smoke = ["--duration", "3", "--warmup", "3", "--rounds", "1", "--held-streams", "20"]
    result = subprocess.run(
        [sys.executable, "-m", "bench.load_generator", *smoke],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.stdout.splitlines()
    assert any(line.startswith("documented pattern") and line.endswith("1.00x") for line in report)
    assert any(line.startswith("this project: GrpcUser") and line.endswith("x") for line in report)
    assert any("20 streams held" in line for line in report)
