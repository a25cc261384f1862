"""One headless load run: ``python -m loadtest.run`` — what ``make load``, the demo and the tests
run, so a run means the same thing everywhere.

1. the seed users the load reads are created if missing (``loadtest.seed``; skipped with
   ``--no-seed``);
2. Locust runs headless — the CRUD mix, every stream kind, held subscriptions — writing its CSV
   (and with ``--html`` its HTML report) into ``--report-dir``;
3. the per-RPC table is printed and the gate applied (``loadtest.report``).

The target, credentials, mix and tracing come from the environment (``USER_SERVICE_*``,
``LOAD_*``, ``OTEL_*``), as for Locust itself. Exit status: 0 when the gate passed, 1 when it did
not, 2 when Locust itself failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from loadtest import report
from loadtest.seed import seed
from loadtest.settings import LoadSettings
from user_service.config import ClientSettings
from user_service.listening import free_port

LOCUST = (sys.executable, "-m", "loadtest")  # Locust with threads unpatched (loadtest/__main__.py)
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# Locust puts its working directory on sys.path: the locustfile's `import loadtest` needs the
# folder above the package.
WORKDIR = LOCUSTFILE.parents[1]


def locust_command(args: argparse.Namespace) -> list[str]:
    port = free_port()
    command = [
        *LOCUST,
        *("-f", str(LOCUSTFILE), "--headless", "--only-summary"),
        *("--users", str(args.users), "--spawn-rate", str(args.spawn_rate), "--run-time", args.run_time),
        *("--processes", str(args.processes), "--stop-timeout", "5", "--exit-code-on-error", "0"),
        # The master and its forked workers talk over a port of their own, not Locust's fixed
        # 5557: two runs on one machine (a `make load` beside `make incident`'s) must not collide.
        *("--master-bind-port", str(port), "--master-port", str(port)),
        *("--csv", str(args.report_dir / "locust")),
    ]
    if args.html:
        command += ["--html", str(args.report_dir / "report.html")]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--run-time", default="30s", help="Locust's format: 30s, 2m, 1h")
    parser.add_argument("--processes", type=int, default=1, help="Locust worker processes; -1: one per core")
    parser.add_argument("--report-dir", type=Path, default=Path("reports/load"))
    parser.add_argument("--html", action="store_true", help="also write Locust's HTML report")
    parser.add_argument("--no-seed", dest="seed", action="store_false", help="do not create the seed users")
    parser.add_argument(
        "--quiet", action="store_true", help="Locust's own output to REPORT_DIR/locust.log instead of here"
    )
    args = parser.parse_args(argv)
    args.report_dir = args.report_dir.resolve()
    args.report_dir.mkdir(parents=True, exist_ok=True)
    if args.seed:
        print(f"seed: {seed(ClientSettings(), LoadSettings())} users present", flush=True)
    if args.quiet:
        with (args.report_dir / "locust.log").open("wb") as log:
            ran = subprocess.run(
                locust_command(args), cwd=WORKDIR, stdout=log, stderr=subprocess.STDOUT, check=False
            )
    else:
        ran = subprocess.run(locust_command(args), cwd=WORKDIR, check=False)
    if ran.returncode != 0:
        print(f"locust failed (exit {ran.returncode}); see {args.report_dir}", file=sys.stderr)
        return 2
    return report.main(args.report_dir)


if __name__ == "__main__":
    raise SystemExit(main())
