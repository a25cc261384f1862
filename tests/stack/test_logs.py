"""The third signal: the service's log records reach VictoriaLogs through the Collector, each
carrying the trace it was written in — sampled or not — and lead to that trace in Jaeger; the
log store's web UI, the native stack's one web UI, renders them."""

from __future__ import annotations

import re
import subprocess
from functools import partial
from pathlib import Path

import pytest
import yaml
from PIL import Image

from scripts.stack.observe import eventually
from scripts.stack.plan import REPO
from scripts.stack.probes import failing_call
from tests.conftest import require_tool
from tests.stack.conftest import LoadRun, RunningStack

# The resource attributes a process's spans and log records both carry (Jaeger shows
# service.name as the process's name, the rest as its tags).
SHARED_RESOURCE = ("service.instance.id", "service.version", "deployment.environment.name")
# VMUI's top bar: its theme's primary colour (--color-primary in the page's style).
VMUI_PRIMARY = (0x3F, 0x51, 0xB5)


def test_error_lines_of_sampled_and_unsampled_calls_are_queryable_by_trace_id(
    running_stack: RunningStack, load_run: LoadRun
) -> None:
    """After a load run, failed calls — traced or not — each have their access line in
    VictoriaLogs under their trace id; a sampled call's trace is in Jaeger, from the same
    process (the same resource) as the line."""
    target, token = running_stack.plan.target, running_stack.token
    calls = {failing_call(target, token, sampled=sampled): sampled for sampled in (True, False) * 3}
    for trace_id, sampled in calls.items():
        lines = eventually(partial(running_stack.victorialogs.of_trace, trace_id), timeout=30)
        assert lines, f"no log line of trace {trace_id} (sampled: {sampled})"
        (line,) = lines
        assert (line["rpc_method"], line["grpc_code"]) == ("GetUser", "NotFound")
        assert line["severity_text"] == "INFO"
        assert (line["service.name"], line["scope.name"]) == ("user-service", "user_service.access")
        assert line["trace_sampled"] == str(sampled).lower()
        assert len(line["span_id"]) == 16
        if not sampled:
            continue
        spans = eventually(partial(running_stack.jaeger.trace, trace_id), timeout=30)
        assert spans, f"trace {trace_id} of a sampled failed call is not in Jaeger"
        server = next(span for span in spans if span.service == "user-service" and span.kind == "server")
        assert server.span_id == line["span_id"], "the line names the server span it was written in"
        assert {key: str(server.resource[key]) for key in SHARED_RESOURCE} == {
            key: line[key] for key in SHARED_RESOURCE
        }


def test_the_load_generators_lines_are_stored_under_its_own_name(
    running_stack: RunningStack, load_run: LoadRun
) -> None:
    """Locust's own lines (the run's start and end) are in the log store, as the generator's."""
    lines = eventually(
        lambda: running_stack.victorialogs.query('service.name:="user-service-loadgen"'), timeout=30
    )
    assert lines, "no log line of the load generator"
    assert {line["user_agent.synthetic.type"] for line in lines} == {"test"}


def test_the_web_ui_renders_a_traces_log_lines(running_stack: RunningStack, tmp_path: Path) -> None:
    """VictoriaLogs's own web UI, served by the native binary, renders its query page with the
    lines of a trace (headless Chromium runs its JavaScript; the DOM holds the line) and draws
    it (the screenshot is a page, not a blank or an error: the UI's top bar is there)."""
    chromium = require_tool("chromium")
    trace_id = failing_call(running_stack.plan.target, running_stack.token)
    logs = running_stack.victorialogs
    assert eventually(partial(logs.of_trace, trace_id), timeout=30)
    url = logs.ui_url(f'trace_id:="{trace_id}"')
    headless = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    headless += ["--window-size=1280,800", "--virtual-time-budget=10000"]
    dom = subprocess.run([*headless, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "<title>Query - UI for VictoriaLogs</title>" in dom
    assert "user.v1.UserService/GetUser NotFound" in dom, "the query page did not show the trace's line"
    shot = tmp_path / "vmui.png"
    subprocess.run([*headless, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    with Image.open(shot) as image:
        pixels = image.convert("RGB")
        assert pixels.size == (1280, 800)
        top_bar = [pixels.getpixel((x, 5)) for x in range(0, 1280, 40)]
        assert top_bar.count(VMUI_PRIMARY) > len(top_bar) / 2, f"no VMUI top bar: {top_bar[:5]}"
        colors = pixels.getcolors(maxcolors=1280 * 800) or []
        assert len(colors) > 50, "the page drew (almost) nothing"


def runbook_queries() -> list[tuple[str, str]]:
    """(runbook, LogsQL) of every ```logsql block of docs/runbooks."""
    return [
        (path.stem, query.strip())
        for path in sorted((REPO / "docs/runbooks").glob("*.md"))
        for query in re.findall(r"```logsql\n(.*?)```", path.read_text(), re.DOTALL)
    ]


def test_every_runbook_confirms_in_the_logs() -> None:
    """Each runbook's "Confirm" step includes a LogsQL query."""
    with_queries = {runbook for runbook, _ in runbook_queries()}
    assert with_queries == {path.stem for path in (REPO / "docs/runbooks").glob("*.md")}


@pytest.mark.parametrize(("runbook", "logsql"), runbook_queries(), ids=lambda value: value[:40])
def test_runbook_queries_run_on_victorialogs(running_stack: RunningStack, runbook: str, logsql: str) -> None:
    """VictoriaLogs accepts every runbook query as written (it answers 400 to a LogsQL error)."""
    running_stack.victorialogs.query(logsql)


def test_grafanas_trace_to_logs_query_finds_the_traces_lines(running_stack: RunningStack) -> None:
    """The query Grafana runs from a trace to its logs (the Jaeger datasource's tracesToLogsV2,
    as provisioned, with the trace id in place of its variable) returns that trace's line."""
    provisioned = yaml.safe_load((REPO / "grafana/provisioning/datasources/datasources.yml").read_text())
    (jaeger,) = [source for source in provisioned["datasources"] if source["uid"] == "jaeger"]
    template = jaeger["jsonData"]["tracesToLogsV2"]["query"].replace("$$", "$")  # provisioning's escape
    trace_id = failing_call(running_stack.plan.target, running_stack.token)
    logsql = template.replace("${__trace.traceId}", trace_id)
    lines = eventually(partial(running_stack.victorialogs.query, logsql), timeout=30)
    assert lines, logsql
    assert {line["trace_id"] for line in lines} == {trace_id}
