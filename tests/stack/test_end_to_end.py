"""The stack end to end: a Locust run through the real service, Collector, Jaeger and
Prometheus, then what a user would look at — traces, series, exemplars, every dashboard panel
and recording rule — read back through their APIs."""

from __future__ import annotations

import re
import time
from functools import partial
from typing import Any

import pytest
import yaml

from scripts.dashboards import BOARDS
from scripts.stack.observe import STORE_SPAN, Span, end_to_end_trace, eventually, format_tree
from scripts.stack.plan import REPO
from scripts.stack.probes import failing_call, traced_subscription
from tests.stack.conftest import LoadRun, RunningStack

RPC_KINDS = {"unary", "client_stream", "server_stream", "bidi_stream"}
# Grafana's template variables, as a user who selects "All" would send them.
VARIABLES = {"$__rate_interval": "1m", "$method": ".*", "$type": ".*", "$code": ".*"}
GRAFANA_VARIABLE = re.compile(r"\$(\w|\{)")  # $name or ${name}; a regex's closing $ is not one


def test_time_to_first_trace_is_reported(
    running_stack: RunningStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """From `up` (binaries cached) to a trace queryable in Jaeger: measured, printed (the
    figure is a report, not an assertion — the demo prints it too)."""
    with capsys.disabled():
        print(
            f"\n[stack] ready in {running_stack.seconds_to_ready:.1f} s;"
            f" first trace queryable after {running_stack.seconds_to_first_trace:.1f} s"
        )
    assert running_stack.seconds_to_first_trace >= running_stack.seconds_to_ready


def test_traces_run_from_the_load_generator_through_the_server_to_the_store(
    running_stack: RunningStack, load_run: LoadRun
) -> None:
    """A load generator client span is the parent of the server span, which has store spans."""

    trace = eventually(lambda: end_to_end_trace(running_stack.jaeger), timeout=30)
    assert trace, "no trace links load generator → server → store"
    assert "user-service-loadgen" in format_tree(trace).splitlines()[0]


@pytest.mark.parametrize("method", ["BatchCreateUsers", "LookupUsers"], ids=["client_stream", "bidi"])
def test_streaming_rpcs_are_traced(running_stack: RunningStack, load_run: LoadRun, method: str) -> None:
    """The load generator's streams have server spans too, with a store span per item."""

    def traced() -> list[Span] | None:
        operation = f"/user.v1.UserService/{method}"
        for spans in running_stack.jaeger.traces("user-service", operation=operation, limit=5):
            if any(span.name == operation and span.kind == "server" for span in spans):
                return spans
        return None

    trace = eventually(traced, timeout=30)
    assert trace, f"no {method} trace in Jaeger"
    assert any(STORE_SPAN.match(span.name) for span in trace), format_tree(trace)


def test_a_subscription_is_traced_when_it_ends(running_stack: RunningStack, load_run: LoadRun) -> None:
    """A sampled SubscribeUsers stream (the load generator holds its subscriptions untraced:
    a minute-long stream is no request) is a server span with a deliver span per event."""
    trace_id = traced_subscription(running_stack.plan.target, running_stack.token)
    trace = eventually(lambda: running_stack.jaeger.trace(trace_id), timeout=30)
    assert trace, "the subscription's trace never reached Jaeger"
    names = [span.name for span in trace]
    assert "/user.v1.UserService/SubscribeUsers" in names
    assert names.count("user_events deliver") >= 3, format_tree(trace)


def test_prometheus_holds_grpc_series_for_every_rpc_kind(
    running_stack: RunningStack, load_run: LoadRun
) -> None:
    """The service's go-grpc-middleware series, with their labels, for all four RPC kinds."""
    expr = (
        "sum by (grpc_type, grpc_service, grpc_method, grpc_code)"
        ' (grpc_server_handled_total{grpc_service="user.v1.UserService"}) > 0'
    )

    def every_kind() -> list[dict[str, Any]] | None:
        samples = running_stack.prometheus.query(expr)
        return samples if {sample["metric"]["grpc_type"] for sample in samples} == RPC_KINDS else None

    samples = eventually(every_kind, timeout=30)
    assert samples, f"not every RPC kind has completed calls: {running_stack.prometheus.query(expr)}"
    methods = {(s["metric"]["grpc_type"], s["metric"]["grpc_method"]) for s in samples}
    assert {
        ("unary", "GetUser"),
        ("client_stream", "BatchCreateUsers"),
        ("server_stream", "SubscribeUsers"),
        ("bidi_stream", "LookupUsers"),
    } <= methods
    assert all(sample["metric"]["grpc_code"] for sample in samples)


@pytest.mark.parametrize(
    "metric", ["grpc_server_handling_seconds_bucket", "traces_span_metrics_duration_seconds_bucket"]
)
def test_exemplars_lead_to_traces_in_jaeger(
    running_stack: RunningStack, load_run: LoadRun, metric: str
) -> None:
    """The exemplars Prometheus stored (the service's, and the Collector's span metrics') name
    trace ids that Jaeger has: the click from a latency panel to a trace works."""
    exemplars = eventually(lambda: running_stack.prometheus.exemplars(metric), timeout=30) or []
    assert exemplars, f"no exemplars on {metric}"
    trace_ids = list(dict.fromkeys(exemplar["labels"]["trace_id"] for exemplar in exemplars))[-5:]
    missing = [
        tid for tid in trace_ids if not eventually(partial(running_stack.jaeger.trace, tid), timeout=15)
    ]
    assert not missing, f"exemplar trace ids not in Jaeger: {missing}"


def panel_queries() -> list[tuple[str, str]]:
    queries = []
    for board in BOARDS:
        for panel in board.metrics_panels():
            for query in panel.queries:
                expr = query.expr
                for variable, value in VARIABLES.items():
                    expr = expr.replace(variable, value)
                assert "$" not in expr, f"unsubstituted variable in {board.uid} / {panel.title}: {expr}"
                queries.append((f"{board.uid} / {panel.title} / {query.legend}", expr))
    return queries


def rule_definitions() -> list[dict[str, Any]]:
    return [
        rule
        for path in sorted((REPO / "prometheus/rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def recording_rules() -> list[str]:
    return [rule["record"] for rule in rule_definitions() if "record" in rule]


def test_every_panel_query_and_recording_rule_returns_data(
    running_stack: RunningStack, load_run: LoadRun
) -> None:
    """Within a minute of the load, no dashboard panel and no recording rule is empty."""
    pending: dict[str, str] = dict(panel_queries()) | {f"rule {name}": name for name in recording_rules()}

    def all_answered() -> bool:
        for name, expr in list(pending.items()):
            if running_stack.prometheus.query(expr):
                del pending[name]
        return not pending

    eventually(all_answered, timeout=max(5.0, load_run.ended + 60 - time.time()), interval=2)
    assert not pending, "empty: " + "; ".join(f"{name}: {expr}" for name, expr in pending.items())


def test_every_logs_panel_query_returns_lines(running_stack: RunningStack, load_run: LoadRun) -> None:
    """Every logs panel's LogsQL, with its variables at "All", runs on the real VictoriaLogs and
    shows the line of a failed call."""
    trace_id = failing_call(running_stack.plan.target, running_stack.token)
    for board in BOARDS:
        for panel in board.logs_panels():
            logsql = panel.logsql
            for variable, value in VARIABLES.items():
                logsql = logsql.replace(variable, value)
            assert not GRAFANA_VARIABLE.search(logsql), f"a variable left in {board.uid} / {panel.title}"
            lines = eventually(partial(_lines_of_trace, running_stack, logsql, trace_id), timeout=30)
            assert lines, f"{board.uid} / {panel.title} does not show the failed call's line: {logsql}"


def plugin_multi_value(*values: str) -> str:
    """How the VictoriaLogs datasource plugin (v0.30.1, `replaceMultiVariables` in src/datasource.ts)
    writes a variable with several selected values when the filter before it is a regex (`:~`)."""
    return "(" + "|".join(values) + ")"


def test_a_logs_panel_filters_by_several_selected_values(
    running_stack: RunningStack, load_run: LoadRun
) -> None:
    """The RED logs panel with several methods and codes selected, as the plugin interpolates
    them, shows a failed GetUser's line when GetUser and NotFound are among them, and not when not."""
    trace_id = failing_call(running_stack.plan.target, running_stack.token)
    (panel,) = (panel for board in BOARDS for panel in board.logs_panels() if "$method" in panel.logsql)

    def selected(methods: tuple[str, ...], codes: tuple[str, ...]) -> str:
        chosen = {"$method": plugin_multi_value(*methods), "$code": plugin_multi_value(*codes)}
        logsql = panel.logsql
        for variable, value in (VARIABLES | chosen).items():
            logsql = logsql.replace(variable, value)
        return logsql

    shown = selected(("ListUsers", "GetUser"), ("InvalidArgument", "NotFound"))
    assert eventually(partial(_lines_of_trace, running_stack, shown, trace_id), timeout=30), shown
    # The line is stored by now: a selection without its method or its code must not show it.
    hidden = (selected(("ListUsers", "CreateUser"), ("NotFound",)), selected(("GetUser",), ("Internal",)))
    for logsql in hidden:
        assert _lines_of_trace(running_stack, logsql, trace_id) == [], logsql


def _lines_of_trace(running_stack: RunningStack, logsql: str, trace_id: str) -> list[dict[str, str]]:
    return [line for line in running_stack.victorialogs.query(logsql) if line.get("trace_id") == trace_id]


def test_rules_evaluate_without_errors(running_stack: RunningStack, load_run: LoadRun) -> None:
    """Every rule group loaded into the running Prometheus evaluates cleanly; no alert fires
    on a healthy run."""
    body: dict[str, Any] = running_stack.prometheus.rules()
    rules = [rule for group in body["groups"] for rule in group["rules"]]
    assert len(rules) == len(rule_definitions())
    broken = [rule["name"] for rule in rules if rule["health"] != "ok"]
    assert not broken, broken
    firing = [rule["name"] for rule in rules if rule.get("state") == "firing"]
    assert not firing, firing


def test_every_component_is_scraped(running_stack: RunningStack, load_run: LoadRun) -> None:
    """Prometheus reaches the service, the Collector (itself and its exporter), Jaeger,
    VictoriaLogs and itself."""
    up = eventually(lambda: running_stack.prometheus.query("up == 1"), timeout=20) or []
    assert {sample["metric"]["job"] for sample in up} == {
        "user-service",
        "otel-collector",
        "otel-collector-exporter",
        "jaeger",
        "victorialogs",
        "prometheus",
    }


def test_load_generator_traffic_is_distinguishable(running_stack: RunningStack, load_run: LoadRun) -> None:
    """The load generator's own series (every request it made) carry its service name."""
    samples = running_stack.prometheus.query(
        'sum by (request_name) (loadgen_request_duration_seconds_count{job="user-service-loadgen"})'
    )
    assert {"GetUser", "BatchCreateUsers", "LookupUsers", "SubscribeUsers delivery"} <= {
        s["metric"]["request_name"] for s in samples
    }
