"""A telemetry backend that goes away must not take the service with it: with the Collector,
Jaeger or VictoriaLogs stopped in the middle of a load run, every call still succeeds within its
deadline (spans and log records queue in bounded buffers and are dropped, counted, when those
fill), and once the component is back, new traces reach Jaeger and new lines VictoriaLogs again.

Runs after test_end_to_end (alphabetical order): the Jaeger restart empties its memory store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from scripts.stack.observe import Prometheus, eventually
from scripts.stack.probes import failing_call, traced_call
from tests.stack.conftest import RunningStack, locust_totals, start_locust

RUN_SECONDS = 12
OUTAGE_AFTER = 3.0


@pytest.mark.parametrize("component", ["otel-collector", "jaeger", "victorialogs"])
def test_load_run_is_unharmed_when_a_telemetry_component_stops(
    running_stack: RunningStack, tmp_path: Path, component: str
) -> None:
    stack, plan = running_stack.stack, running_stack.plan
    locust = start_locust(running_stack, RUN_SECONDS, tmp_path)
    try:
        time.sleep(OUTAGE_AFTER)
        stack.stop(component)
        assert locust.wait(timeout=90) == 0
    finally:
        stack.start(component)
        stack.wait_ready(component)
    requests, failures = locust_totals(tmp_path)
    assert requests > 100
    assert failures == 0, f"{failures} of {requests} calls failed while {component} was down"
    assert stack.components["user-service"].ready()  # still serving
    trace_id = traced_call(plan.target, running_stack.token)
    assert eventually(lambda: running_stack.jaeger.trace(trace_id), timeout=30), (
        f"no trace reached Jaeger after {component} came back"
    )
    trace_id = failing_call(plan.target, running_stack.token)
    assert eventually(lambda: running_stack.victorialogs.of_trace(trace_id), timeout=30), (
        f"no log line reached VictoriaLogs after {component} came back"
    )


def test_collector_counts_what_it_could_not_deliver(running_stack: RunningStack, tmp_path: Path) -> None:
    """With Jaeger down, the Collector's exporter fails and says so in its own metrics (what the
    pipeline dashboard and the SpanExportDrops alert read) — it neither blocks nor hides it."""
    collector = Prometheus(running_stack.plan.prometheus_url)
    failed = 'sum(otelcol_exporter_send_failed_spans_total{job="otel-collector"})'
    before = collector.scalar(failed) or 0.0
    stack = running_stack.stack
    stack.stop("jaeger")
    try:
        for _ in range(20):
            traced_call(running_stack.plan.target, running_stack.token)
        counted = eventually(lambda: (collector.scalar(failed) or 0.0) > before or None, timeout=60)
    finally:
        stack.start("jaeger")
        stack.wait_ready("jaeger")
    assert counted, "the Collector's failed-span counter did not move while Jaeger was down"


def test_collector_counts_the_log_records_it_could_not_deliver(running_stack: RunningStack) -> None:
    """With VictoriaLogs down, the failed calls' lines are refused at the Collector's exporter
    and counted there (the pipeline dashboard's "log records failed" panel); the lines written
    after it is back are stored."""
    collector = Prometheus(running_stack.plan.prometheus_url)
    failed = 'sum(otelcol_exporter_send_failed_log_records_total{job="otel-collector"})'
    before = collector.scalar(failed) or 0.0
    stack, plan = running_stack.stack, running_stack.plan
    stack.stop("victorialogs")
    try:
        for _ in range(20):
            failing_call(plan.target, running_stack.token)
        counted = eventually(lambda: (collector.scalar(failed) or 0.0) > before or None, timeout=90)
    finally:
        stack.start("victorialogs")
        stack.wait_ready("victorialogs")
    assert counted, "the Collector's failed-log-record counter did not move while VictoriaLogs was down"
    after = failing_call(plan.target, running_stack.token)
    assert eventually(lambda: running_stack.victorialogs.of_trace(after), timeout=30)
