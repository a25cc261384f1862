"""The run's verdict: ``python -m loadtest.report REPORT_DIR`` reads Locust's CSV statistics,
prints a table per RPC (requests/s, p50/p95/p99, bytes received and messages per call, failures
by status code) and exits 1 when a limit is exceeded — usable as a CI gate.

Limits (environment): ``LOAD_MAX_FAIL_RATIO`` (failures / requests over the whole run,
default 0.01), ``LOAD_MAX_P99_MS`` (every call row, default 1000), and
``LOAD_MAX_DELIVERY_P99_MS`` (event commit → receipt, default 2000). Stream lifetimes and
time-to-first-event are reported but not gated: they follow the write rate, not the service.
"""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

DELIVERY = "SubscribeUsers delivery"
MESSAGES_SUFFIX = "_messages.csv"  # beside Locust's CSV: loadtest.messages writes it
NOT_GATED = ("SubscribeUsers stream", "SubscribeUsers first event")


@dataclass(frozen=True)
class Row:
    type: str
    name: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float
    bytes_per_request: float  # Locust's "Average size (bytes)": the payload received
    messages_per_request: float | None = None  # from loadtest.messages; None: not counted


@dataclass(frozen=True)
class Limits:
    max_fail_ratio: float
    max_p99_ms: float
    max_delivery_p99_ms: float

    @classmethod
    def from_environment(cls) -> Limits:
        return cls(
            float(os.environ.get("LOAD_MAX_FAIL_RATIO", "0.01")),
            float(os.environ.get("LOAD_MAX_P99_MS", "1000")),
            float(os.environ.get("LOAD_MAX_DELIVERY_P99_MS", "2000")),
        )


def read_rows(stats_csv: Path) -> tuple[list[Row], Row]:
    """Per-RPC rows and the aggregate, from Locust's ``*_stats.csv`` (and the messages per call
    counted beside it)."""
    messages = read_messages(Path(str(stats_csv).removesuffix("_stats.csv") + MESSAGES_SUFFIX))
    rows = []
    with stats_csv.open(newline="") as file:
        for line in csv.DictReader(file):
            rows.append(
                Row(
                    type=line["Type"],
                    name=line["Name"],
                    requests=int(line["Request Count"]),
                    failures=int(line["Failure Count"]),
                    rps=float(line["Requests/s"]),
                    p50=_percentile(line["50%"]),
                    p95=_percentile(line["95%"]),
                    p99=_percentile(line["99%"]),
                    bytes_per_request=float(line["Average Content Size"]),
                    messages_per_request=messages.get((line["Type"], line["Name"])),
                )
            )
    aggregate = next(row for row in rows if row.name == "Aggregated")
    return [row for row in rows if row.name != "Aggregated"], aggregate


def read_messages(path: Path) -> dict[tuple[str, str], float]:
    """(type, name) -> messages per call (empty when the file is absent: a run without CSV)."""
    if not path.exists():
        return {}
    with path.open(newline="") as file:
        return {
            (row["Type"], row["Name"]): int(row["Messages"]) / int(row["Calls"])
            for row in csv.DictReader(file)
            if int(row["Calls"])
        }


def read_failures(failures_csv: Path) -> list[tuple[str, str, int]]:
    """(method, status code, occurrences) from Locust's ``*_failures.csv``."""
    with failures_csv.open(newline="") as file:
        return [(line["Name"], line["Error"], int(line["Occurrences"])) for line in csv.DictReader(file)]


def verdict(rows: list[Row], aggregate: Row, limits: Limits) -> list[str]:
    """What exceeded its limit, in words; empty when the run passes."""
    problems = []
    if aggregate.requests == 0:
        problems.append("no requests were made")
    elif aggregate.failures / aggregate.requests > limits.max_fail_ratio:
        ratio = aggregate.failures / aggregate.requests
        problems.append(f"failure ratio {ratio:.2%} > {limits.max_fail_ratio:.2%}")
    for row in rows:
        limit = limits.max_delivery_p99_ms if row.name == DELIVERY else limits.max_p99_ms
        if row.name not in NOT_GATED and row.p99 > limit:
            problems.append(f"{row.name} p99 {row.p99:.0f} ms > {limit:.0f} ms")
    return problems


def table(rows: list[Row], aggregate: Row, failures: list[tuple[str, str, int]]) -> str:
    header = (
        f"{'type':<14} {'name':<28} {'requests':>9} {'fails':>6} {'req/s':>8}"
        f" {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'bytes':>7} {'msgs':>6}"
    )
    lines = [header, "-" * len(header)]
    for row in [*sorted(rows, key=lambda r: (r.type, r.name)), aggregate]:
        lines.append(
            f"{row.type:<14} {row.name:<28} {row.requests:>9} {row.failures:>6} {row.rps:>8.1f}"
            f" {row.p50:>7.0f} {row.p95:>7.0f} {row.p99:>7.0f} {row.bytes_per_request:>7.0f}"
            f" {_messages(row):>6}"
        )
    if failures:
        lines.append("")
        lines.append("failures by status code:")
        lines.extend(f"  {name:<28} {code:<20} {count:>6}" for name, code, count in failures)
    return "\n".join(lines)


def _messages(row: Row) -> str:
    return "-" if row.messages_per_request is None else f"{row.messages_per_request:.1f}"


def _percentile(value: str) -> float:
    return float(value) if value not in ("", "N/A") else 0.0


def main(report_dir: Path) -> int:
    rows, aggregate = read_rows(report_dir / "locust_stats.csv")
    failures = read_failures(report_dir / "locust_failures.csv")
    print(table(rows, aggregate, failures))
    problems = verdict(rows, aggregate, Limits.from_environment())
    print()
    if problems:
        print("GATE FAILED: " + "; ".join(problems))
        return 1
    print(
        f"gate passed ({aggregate.requests} requests, {aggregate.failures} failures); reports in {report_dir}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "reports/load")))
