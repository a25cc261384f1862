"""`make demo`, the README's first command, as a user runs it — on a stack of its own (free
ports, a temporary folder), stopped afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from scripts.stack.plan import REPO, StackPlan, StackPorts
from tests.stack.conftest import require_stack_binaries


def test_make_demo_runs_the_stack_and_reports_what_it_saw(tmp_path: Path) -> None:
    require_stack_binaries()
    run_dir = tmp_path / "stack"
    plan = StackPlan(run_dir, StackPorts.free(), credentials_dir=tmp_path / "credentials")
    plan.save()
    env = {**os.environ, "STACK_RUN_DIR": str(run_dir)}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "scripts.demo"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        status = subprocess.run(  # `make status` on the stack the demo left running
            [sys.executable, "-m", "scripts.stack", "status", "--engine", "native"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "scripts.stack", "down", "--engine", "native"],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "subscriber received all 6 events" in out
    assert "gate passed" in out, "the Locust table and its gate"
    assert "as Prometheus saw it" in out
    assert "   unary         GetUser" in out, "per-RPC rates and quantiles from Prometheus"
    overhead = out.split("how much of Locust's p50 is the load generator's own")[1]
    assert re.search(r"^   GetUser +[\d.]+ - +[\d.]+ = +-?[\d.]+ ms$", overhead, re.MULTILINE), overhead
    assert "load generator → server → store" in out
    assert "user-service-loadgen   client   /user.v1.UserService/" in out, "a trace printed as a tree"
    assert "the slowest exemplar" in out
    exemplar = out.split("the slowest exemplar")[1]
    assert "its log lines (http://127.0.0.1:" in exemplar, "the exemplar's trace, then its log lines"
    failed = out.split("-- a failed call, from its log line")[1]
    assert re.search(r"user_service\.access: user\.v1\.UserService/\w+ \w+ +grpc_code=", failed), failed
    assert "its trace, http://127.0.0.1:" in failed
    assert "user-service           server   /user.v1.UserService/" in failed, (
        "the failed call's trace as a tree"
    )
    assert "first trace queryable in Jaeger" in out
    assert "total" in out.split("memory after the load run")[1], "each component's memory"
    logs_ui = f"{plan.victorialogs_url}/select/vmui/"
    assert re.search(rf"^victorialogs +\d+ ready .* {re.escape(logs_ui)} ", status.stdout, re.MULTILINE), (
        status.stdout
    )
    assert f"Logs: {logs_ui}" in status.stdout
