"""``python -m scripts.stack up|down|status [--engine auto|docker|native]``.

``auto`` (the default, or STACK_ENGINE) uses Docker compose when a Docker engine answers,
native processes otherwise."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from devkit.dev_credentials import ensure_dev_credentials
from scripts.stack.engine import StackRefusedError, choose_engine, down, up
from scripts.stack.native import NativeStack
from scripts.stack.plan import DEFAULT_RUN_DIR, REPO, StackPlan, requested_replicas

GRAFANA = "http://localhost:3000 (dashboards under 'user-service'; anonymous read-only)"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument(
        "--engine", choices=("auto", "docker", "native"), help="default: STACK_ENGINE or auto"
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
    try:
        engine = choose_engine(args.engine)
        plan = StackPlan.load(args.run_dir)
        if args.command == "up":
            started = up(requested_replicas(plan, args.replicas), engine)
            print(f"Stack ready in {started.ready_seconds:.1f} s (build: {started.build_seconds:.1f} s).")
        elif args.command == "down":
            stopped = down(plan, engine)
            print(f"Stopped {', '.join(stopped)}." if stopped else "Nothing was running.")
            return 0
    except StackRefusedError as error:
        print(error, file=sys.stderr)
        return 1
    if engine == "docker":
        return print_compose_status(args.command)
    credentials = ensure_dev_credentials(plan.credentials_dir)
    print_status(NativeStack(StackPlan.load(args.run_dir), credentials.server_env()), plan)
    return 0


def print_compose_status(command: str) -> int:
    code = subprocess.run(["docker", "compose", "ps"], cwd=REPO, check=False).returncode
    if command == "up":
        print(
            "\nThe stack runs in Docker:\n"
            f"  Grafana     {GRAFANA}\n"
            "  Jaeger      http://localhost:16686\n"
            "  Prometheus  http://localhost:9090\n"
            "  Logs        http://localhost:9428/select/vmui/ (VictoriaLogs's web UI; in Grafana: Explore)\n"
            "  Locust      http://localhost:8089 (web UI; start a run there)\n"
            "  gRPC        localhost:50051, /metrics on http://localhost:9464/metrics\n"
            "Stop it with `make down`."
        )
    return code


def print_status(stack: NativeStack, plan: StackPlan) -> None:
    print(f"\n{'component':<15} {'pid':>7} {'state':<8} {'RSS':>7}  where")
    for state in stack.status():
        pid = str(state.pid) if state.pid else "-"
        condition = "ready" if state.ready else ("starting" if state.pid else "stopped")
        rss = f"{state.rss_bytes / 2**20:.0f} MiB" if state.rss_bytes else "-"
        print(f"{state.name:<15} {pid:>7} {condition:<8} {rss:>7}  {state.url}")
    print(
        f'\nLogs: {plan.victorialogs_url}/select/vmui/ (VictoriaLogs\'s web UI; try trace_id:="<id>").\n'
        f"Grafana does not run natively (no registry here distributes it); its dashboards\n"
        f"(grafana/dashboards) query this Prometheus. Credentials: {plan.credentials_dir}.\n"
        "Load: `make load` (headless) or `make load-ui` (Locust on http://127.0.0.1:8089). Stop: `make down`."
    )


if __name__ == "__main__":
    raise SystemExit(main())
