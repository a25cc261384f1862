"""`make demo`: the stack up, a walkthrough of every RPC through the CLI, a load run, and what it left behind.

1. `make up`: Jaeger, the OpenTelemetry Collector, Prometheus and the service (Docker compose
   when an engine answers, native processes otherwise); the time until the first trace is
   queryable in Jaeger.
2. Every RPC through the `user-service` CLI, exactly as a user would type it (the transcript
   doubles as documentation), with a live subscriber following the changes.
3. A Locust load run: unary calls, every stream kind, held subscriptions.
4. The summary, read back from the real backends: requests/s and p50/p95/p99 per RPC as Locust
   saw them and as Prometheus saw them, the traces in Jaeger, one trace as a tree (load
   generator → server → store), the slowest exemplar and its trace with the trace's log lines,
   a failed call found from its log line to its trace, each component's memory.

The stack stays up for exploring (`make status`, `make down`). Exits non-zero if a step
does not behave.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from devkit.dev_credentials import DevCredentials, ensure_dev_credentials
from loadtest.report import read_rows
from scripts.stack.engine import StackRefusedError, choose_engine, up
from scripts.stack.native import NativeStack
from scripts.stack.observe import (
    Jaeger,
    Prometheus,
    Span,
    VictoriaLogs,
    end_to_end_trace,
    eventually,
    format_tree,
)
from scripts.stack.plan import REPO, StackPlan, requested_replicas
from scripts.stack.probes import login, traced_call

CLI = str(Path(sys.executable).with_name("user-service"))
EXPECTED_EVENTS = 6  # 2 creates, 1 update, 1 delete, 2 batch creates
DEMO_REPORTS = REPO / "reports/demo"  # Locust's CSV and HTML of the demo's load run (git-ignored)
LOAD_SECONDS = 20
SAMPLING = "0.1"  # the load generator's trace sampling ratio in the demo (make load: 1 %)


def main() -> int:
    plan = requested_replicas(StackPlan.load())
    credentials = ensure_dev_credentials(plan.credentials_dir)
    engine = choose_engine()
    print(f"== make up ({'Docker compose' if engine == 'docker' else 'native processes: no Docker engine'})")
    try:
        started = up(plan, engine, progress=lambda line: print(f"   {line}"))
    except StackRefusedError as error:
        raise SystemExit(f"!! {error}") from error
    print(
        f"   built in {started.build_seconds:.1f} s (the first run builds; cached after),"
        f" ready in {started.ready_seconds:.1f} s"
    )
    jaeger, prometheus = Jaeger(plan.jaeger_url), Prometheus(plan.prometheus_url)
    admin_token = login(plan.target, *credentials.secrets["admin"])
    first = traced_call(plan.target, admin_token)
    if not eventually(lambda: jaeger.trace(first), timeout=60):
        print("!! the first trace never reached Jaeger", file=sys.stderr)
        return 1
    to_first_trace = time.monotonic() - started.start_began
    print(f"== first trace queryable in Jaeger {to_first_trace:.1f} s after the stack began to start")

    # Inherited by every CLI call below: the stack's service, an admin token, traces to the stack.
    os.environ.update(
        USER_SERVICE_TARGET=plan.target,
        USER_SERVICE_TOKEN=admin_token,
        OTEL_EXPORTER_OTLP_ENDPOINT=plan.otlp_endpoint,
    )
    print(
        "\n$ USER_SERVICE_CLIENT_SECRET=... user-service login"
        f" --client-id {credentials.secrets['reader'][0]}  (a reader's token, for a refused delete)"
    )
    reader_token = login(plan.target, *credentials.secrets["reader"])
    result = _walkthrough(plan, reader_token)
    result = result or _load_run(plan, credentials, DEMO_REPORTS)
    _summary(plan, prometheus, jaeger)
    print(f"\n== time to first trace: {to_first_trace:.1f} s (goal: 10 s)")
    if started.native is not None:
        _print_memory(started.native)
    print(
        "\nThe stack is still running: `make status` shows it, `make load` drives it again,"
        " `make incident NAME=errors` breaks it on purpose and follows the alert to the trace"
        " (`make incident` alone: every story), `make down` stops it."
    )
    return result


def _load_run(plan: StackPlan, credentials: DevCredentials, report_dir: Path) -> int:
    """The load run `make load` makes (``loadtest.run``): seed, Locust, the per-RPC table."""
    print(
        f"\n== load: {LOAD_SECONDS} s of Locust — a CRUD mix, streams of every kind, 2 held subscriptions;"
        f" {float(SAMPLING):.0%} of calls traced from the load generator on"
    )
    env = {
        **os.environ,
        **credentials.client_env("admin"),
        "USER_SERVICE_TARGET": plan.target,
        "OTEL_EXPORTER_OTLP_ENDPOINT": plan.otlp_endpoint,
        "LOAD_SUBSCRIBERS": "2",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": SAMPLING,
    }
    print("\n-- as Locust saw it (`python -m loadtest.run`, what `make load` prints):", flush=True)
    run = [sys.executable, "-m", "loadtest.run", "--users", "20", "--spawn-rate", "20", "--quiet", "--html"]
    run += ["--run-time", f"{LOAD_SECONDS}s", "--report-dir", str(report_dir)]
    return subprocess.run(run, env=env, timeout=240, cwd=REPO, check=False).returncode


def _summary(plan: StackPlan, prometheus: Prometheus, jaeger: Jaeger) -> None:
    time.sleep(6)  # one scrape and one span-metrics flush after the run's last calls
    # Counters grow only during the run: their increase over a window that covers it (and the
    # scrape after it), divided by the run's length, is the run's rate.
    window = LOAD_SECONDS + 15
    print(f"\n-- as Prometheus saw it ({plan.prometheus_url}; the run's {LOAD_SECONDS} s):")
    server_p50 = _print_server_view(prometheus, window)
    _print_generator_overhead(server_p50, DEMO_REPORTS / "locust_stats.csv")
    traces = jaeger.traces("user-service-loadgen", limit=10_000)
    print(f"\n-- in Jaeger ({plan.jaeger_url}/api/traces?service=user-service-loadgen): {len(traces)} traces")
    example = eventually(lambda: end_to_end_trace(jaeger), timeout=15)
    if example:
        print(f"\n-- one of them, {example[0].trace_id}: load generator → server → store")
        print(_indent(format_tree(example)))
    logs = VictoriaLogs(plan.victorialogs_url)
    _print_slowest_exemplar(prometheus, jaeger, logs, plan, window)
    _print_failed_call_from_its_log_line(jaeger, logs, plan)


def _print_server_view(prometheus: Prometheus, window: int) -> dict[str, float]:
    """The run per RPC as the server measured it; returns each method's p50 in seconds."""
    selector = 'grpc_service="user.v1.UserService"'
    rates = prometheus.query(
        "sum by (grpc_type, grpc_method)"
        f" (increase(grpc_server_handled_total{{{selector}}}[{window}s])) / {LOAD_SECONDS}"
    )
    quantiles = {
        q: {
            sample["metric"]["grpc_method"]: float(sample["value"][1])
            for sample in prometheus.query(
                f"histogram_quantile({q}, sum by (grpc_method, le)"
                f" (increase(grpc_server_handling_seconds_bucket{{{selector}}}[{window}s])))"
            )
        }
        for q in (0.5, 0.95, 0.99)
    }
    print(f"   {'type':<14}{'method':<20}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for sample in sorted(rates, key=lambda s: (s["metric"]["grpc_type"], s["metric"]["grpc_method"])):
        method, kind = sample["metric"]["grpc_method"], sample["metric"]["grpc_type"]
        shown = [quantiles[q].get(method, float("nan")) * 1000 for q in (0.5, 0.95, 0.99)]
        streams = "  (streams: time held open)" if kind == "server_stream" else ""
        print(
            f"   {kind:<14}{method:<20}{float(sample['value'][1]):>8.1f}"
            + "".join(f"{value:>9.1f}" for value in shown)
            + streams
        )
    per_replica = prometheus.query(
        f"sum by (instance) (increase(grpc_server_handled_total{{{selector}}}[{window}s])) / {LOAD_SECONDS}"
    )
    if len(per_replica) > 1:  # STACK_REPLICAS / compose: how round robin spread the run
        spread = ", ".join(
            f"{sample['metric']['instance']} {float(sample['value'][1]):.1f}"
            for sample in sorted(per_replica, key=lambda s: s["metric"]["instance"])
        )
        print(f"   req/s per replica: {spread}")
    return quantiles[0.5]


def _print_generator_overhead(server_p50: dict[str, float], stats_csv: Path) -> None:
    """How much of a latency Locust reports is the load generator's own: its p50 of each unary
    method beside the server's p50 of the same calls (issue 19 measures and shrinks the gap)."""
    rows = [row for row in read_rows(stats_csv)[0] if row.type == "unary" and row.name in server_p50]
    if not rows:
        return
    print("\n-- how much of Locust's p50 is the load generator's own (Locust p50 - server p50):")
    for row in sorted(rows, key=lambda row: row.name):
        server = server_p50[row.name] * 1000
        print(f"   {row.name:<20}{row.p50:>8.1f} - {server:5.1f} = {row.p50 - server:6.1f} ms")


def _print_slowest_exemplar(
    prometheus: Prometheus, jaeger: Jaeger, logs: VictoriaLogs, plan: StackPlan, window: int
) -> None:
    """Alert → exemplar → trace → logs: the slowest sampled unary call, its trace, and the
    lines the service wrote while serving it."""
    exemplars = prometheus.exemplars(
        'grpc_server_handling_seconds_bucket{grpc_service="user.v1.UserService", grpc_type="unary"}',
        window + 30,
    )
    for exemplar in sorted(exemplars, key=lambda e: float(e["value"]), reverse=True)[:10]:
        trace = jaeger.trace(exemplar["labels"]["trace_id"])
        if trace:
            method = exemplar["series"]["grpc_method"]
            print(
                f"\n-- the slowest exemplar: {method} took {float(exemplar['value']) * 1000:.1f} ms"
                f" (bucket le={exemplar['series']['le']});"
                f" its trace, {plan.jaeger_url}/api/traces/{trace[0].trace_id}:"
            )
            print(_indent(format_tree(trace)))
            _print_log_lines(logs, trace)
            return
    print("!! no exemplar with a trace in Jaeger", file=sys.stderr)


def _print_log_lines(logs: VictoriaLogs, trace: list[Span]) -> None:
    trace_id = trace[0].trace_id
    lines = eventually(lambda: logs.of_trace(trace_id), timeout=5) or []
    print(f"   its log lines ({logs.ui_url(f'trace_id:={json.dumps(trace_id)}')}):")
    if not lines:
        print(
            "     none: it ended OK within 250 ms, and at production defaults the access log writes"
            " only calls that failed or took longer (USER_SERVICE_ACCESS_LOG=all writes every call)"
        )
    for line in lines:
        print("     " + _log_line(line))


def _print_failed_call_from_its_log_line(jaeger: Jaeger, logs: VictoriaLogs, plan: StackPlan) -> None:
    """Logs → trace: the newest failed call whose trace was sampled (the walkthrough's refusals;
    a stream its client cancelled did not fail), found by its access line; the line's trace_id
    opens the trace."""
    query = (
        'service.name:="user-service" scope.name:="user_service.access" trace_sampled:="true"'
        ' -grpc_code:in("OK", "Canceled")'
    )
    failed = logs.query(query, limit=1)
    if not failed:
        print("!! no failed call's access line in VictoriaLogs", file=sys.stderr)
        return
    line = failed[0]
    print(f"\n-- a failed call, from its log line ({logs.ui_url(query)}):")
    print("     " + _log_line(line))
    trace = eventually(lambda: jaeger.trace(line["trace_id"]), timeout=10)
    if trace:
        print(f"   its trace, {plan.jaeger_url}/api/traces/{line['trace_id']}:")
        print(_indent(format_tree(trace)))


def _log_line(line: dict[str, str]) -> str:
    fields = " ".join(
        f"{key}={line[key]}" for key in ("grpc_code", "duration_ms", "enduser_id", "peer") if key in line
    )
    where = f"{line.get('severity_text', '')} {line.get('scope.name', '')}"
    return f"{line['_time']} {where}: {line['_msg']}  {fields}"


def _print_memory(stack: NativeStack) -> None:
    print("\n== memory after the load run (resident set):")
    total = 0
    for state in stack.status():
        rss = state.rss_bytes or 0
        total += rss
        print(f"   {state.name:<15}{rss / 2**20:>7.0f} MiB")
    print(f"   {'total':<15}{total / 2**20:>7.0f} MiB")


def _indent(text: str) -> str:
    return "\n".join("   " + line for line in text.splitlines())


def _walkthrough(plan: StackPlan, reader_token: str) -> int:
    """Every RPC through the CLI. Works on a store that already holds data (the stack keeps
    it across runs): addresses are unique to this run, the subscriber follows live events."""
    base = ["--target", plan.target]
    tag = secrets.token_hex(3)
    print("\n== subscriber: follows live change events")
    subscribers = _subscribers(plan)
    subscriber = subprocess.Popen(
        [CLI, "subscribe", "--limit", str(EXPECTED_EVENTS), "--timeout", "30", *base],
        stdout=subprocess.PIPE,
        text=True,
    )
    events: list[dict[str, Any]] = []
    reader = threading.Thread(target=_follow, args=(subscriber, events), daemon=True)
    reader.start()
    # Subscribed once the service counts it (its /metrics): then no event can be missed.
    if not eventually(lambda: _subscribers(plan) > subscribers, timeout=10):
        print("!! the subscriber did not get through", file=sys.stderr)
        return 1

    alice = _cli("create", "--name", "Alice", "--email", f"alice.{tag}@example.com", *base)["user"]
    bob = _cli("create", "--name", "Bob", "--email", f"bob.{tag}@example.com", *base)["user"]
    _cli("get", alice["id"], *base)
    first_page = _cli("list", "--page-size", "1", *base)
    _cli("list", "--page-size", "1", "--page-token", first_page["next_page_token"], *base)
    _cli("update", alice["id"], "--name", "Alice Liddell", "--etag", alice["etag"], *base)
    _cli("update", alice["id"], "--name", "Stale write", "--etag", alice["etag"], *base, expect="ABORTED")
    _cli("delete", bob["id"], *base, "--token", reader_token, expect="PERMISSION_DENIED")
    _cli("delete", bob["id"], *base)
    _cli("get", bob["id"], *base, expect="NOT_FOUND")
    _cli("create", "--name", "", "--email", "not-an-email", *base, expect="INVALID_ARGUMENT")
    batch = "".join(
        json.dumps(user) + "\n"
        for user in (
            {"name": "Carol", "email": f"carol.{tag}@example.com"},
            {"name": "Dave", "email": f"dave.{tag}@example.com"},
            {"name": "Alice again", "email": f"alice.{tag}@example.com"},
        )
    )
    created = _cli("batch-create", *base, stdin=batch)
    _cli(
        "lookup",
        alice["id"],
        *(result["user"]["id"] for result in created["results"] if "user" in result),
        *base,
    )

    subscriber.wait(timeout=30)
    reader.join(timeout=5)
    event_ids = [int(event["event_id"]) for event in events]
    expected = list(range(event_ids[0], event_ids[0] + EXPECTED_EVENTS)) if event_ids else []
    if event_ids != expected or len(event_ids) != EXPECTED_EVENTS or subscriber.returncode != 0:
        print(
            f"!! subscriber saw events {event_ids}, expected {EXPECTED_EVENTS} consecutive ones",
            file=sys.stderr,
        )
        return 1
    print(f"\n== subscriber received all {EXPECTED_EVENTS} events, in event_id order")
    return 0


def _subscribers(plan: StackPlan) -> float:
    """The service's ``user_service_subscribers`` gauge."""
    with urllib.request.urlopen(plan.metrics_url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("user_service_subscribers "):
                return float(line.split()[1])
    return 0.0


def _cli(*args: str, expect: str = "OK", stdin: str | None = None) -> Any:
    shown = [
        arg if previous != "--token" else "$READER_TOKEN"
        for previous, arg in zip(["", *args], args, strict=False)
    ]
    print(f"\n$ user-service {shlex.join(shown)}" + (" < users.jsonl" if stdin else ""), flush=True)
    result = subprocess.run([CLI, *args], input=stdin, capture_output=True, text=True, timeout=30)
    output = result.stdout if result.returncode == 0 else result.stderr
    print(output.rstrip(), flush=True)
    code = "OK" if result.returncode == 0 else json.loads(result.stderr)["error"]["code"]
    if code != expect:
        raise SystemExit(f"!! expected {expect}, got {code}")
    return json.loads(result.stdout.splitlines()[-1]) if result.returncode == 0 else None


def _follow(subscriber: subprocess.Popen[str], events: list[dict[str, Any]]) -> None:
    assert subscriber.stdout is not None
    for line in subscriber.stdout:
        event = json.loads(line)
        events.append(event)
        print(
            f"   [subscriber] event {event['event_id']}: {event['type']} user {event['user']['id']}",
            flush=True,
        )


if __name__ == "__main__":
    raise SystemExit(main())
