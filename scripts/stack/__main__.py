"""``python -m scripts.stack up|down|status [--engine auto|docker|native]``.

``auto`` (the default, or STACK_ENGINE) uses Docker compose when a Docker engine answers,
native processes otherwise."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from devkit.dev_credentials import ensure_dev_credentials
from scripts.stack.docker import compose_problem, engine_answers
from scripts.stack.native import NativeStack, StackError
from scripts.stack.plan import DEFAULT_RUN_DIR, REPO, StackPlan, requested_replicas

GRAFANA = "http://localhost:3000 (dashboards under 'user-service'; anonymous read-only)"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument(
        "--engine", choices=("auto", "docker", "native"), default=os.environ.get("STACK_ENGINE", "auto")
    )
    parser.add_argument(
        "--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="native stack: pid, log, data files"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        help="native `up`: service replicas on one SQLite file, balanced round-robin (env STACK_REPLICAS;"
        " default 1, or what the running stack has)",
    )
    args = parser.parse_args()
    engine = args.engine if args.engine != "auto" else ("docker" if engine_answers() else "native")
    if engine == "docker":
        return compose(args.command)
    plan = StackPlan.load(args.run_dir)
    if args.command == "up":
        plan = requested_replicas(plan, args.replicas)
    return native(args.command, plan)


def compose(command: str) -> int:
    if command == "up" and (problem := compose_problem()):
        print(f"make up with Docker cannot start: {problem}", file=sys.stderr)
        return 1
    ensure_dev_credentials(REPO / ".dev/credentials")  # mounted as compose secrets
    argv = {
        "up": ["up", "--build", "--detach", "--wait", "--wait-timeout", "180"],
        "down": ["down", "--remove-orphans"],
        "status": ["ps"],
    }[command]
    code = subprocess.run(["docker", "compose", *argv], cwd=REPO, check=False).returncode
    if command == "up" and code == 0:
        print(
            "\nThe stack runs in Docker (docker compose ps):\n"
            f"  Grafana     {GRAFANA}\n"
            "  Jaeger      http://localhost:16686\n"
            "  Prometheus  http://localhost:9090\n"
            "  Locust      http://localhost:8089 (web UI; start a run there)\n"
            "  gRPC        localhost:50051, /metrics on http://localhost:9464/metrics\n"
            "Stop it with `make down`."
        )
    return code


def build_native_binaries() -> None:
    """The pinned Collector, Jaeger and Prometheus (minutes on a cold cache, with progress;
    instant once cached)."""
    subprocess.run([str(REPO / "scripts/install-tools.sh"), "stack"], check=True, stdout=subprocess.DEVNULL)


def native(command: str, plan: StackPlan) -> int:
    if command == "up":
        build_native_binaries()
    credentials = ensure_dev_credentials(plan.credentials_dir)
    stack = NativeStack(plan, credentials.server_env())
    running = StackPlan.load(plan.run_dir)
    if command == "up" and running.replicas != plan.replicas and any(s.pid for s in stack.status()):
        print(f"A stack with {running.replicas} replica(s) is running: `make down` first.", file=sys.stderr)
        return 1
    if command == "up":
        print(f"Starting the stack as native processes (no Docker engine); logs in {plan.logs}")
        try:
            seconds = stack.up()
        except StackError as error:
            print(f"make up failed: {error}", file=sys.stderr)
            return 1
        print(f"Stack ready in {seconds:.1f} s.")
    elif command == "down":
        stopped = stack.down()
        print(f"Stopped {', '.join(stopped)}." if stopped else "Nothing was running.")
        return 0
    print_status(stack, plan)
    return 0


def print_status(stack: NativeStack, plan: StackPlan) -> None:
    print(f"\n{'component':<15} {'pid':>7} {'state':<8} {'RSS':>7}  where")
    for state in stack.status():
        pid = str(state.pid) if state.pid else "-"
        condition = "ready" if state.ready else ("starting" if state.pid else "stopped")
        rss = f"{state.rss_bytes / 2**20:.0f} MiB" if state.rss_bytes else "-"
        print(f"{state.name:<15} {pid:>7} {condition:<8} {rss:>7}  {state.url}")
    print(
        f"\nGrafana does not run natively (no registry here distributes it); its dashboards\n"
        f"(grafana/dashboards) query this Prometheus. Credentials: {plan.credentials_dir}.\n"
        "Load: `make load` (headless) or `make load-ui` (Locust on http://127.0.0.1:8089). Stop: `make down`."
    )


if __name__ == "__main__":
    raise SystemExit(main())
