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
