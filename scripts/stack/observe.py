"""Reading the stack back: Prometheus's, Jaeger's and VictoriaLogs's HTTP APIs, as the demo
summary and the end-to-end tests use them (natively there is no Grafana or Jaeger UI; these are
what they call)."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from scripts.stack.plan import REPO

T = TypeVar("T")


def _get(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's samples: ``[{"metric": {...}, "value": [ts, "1.5"]}, ...]``."""
        body = _get(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        if body["status"] != "success":
            raise RuntimeError(f"{expr}: {body}")
        return list(body["data"]["result"])

    def rules(self) -> dict[str, Any]:
        """The loaded rule groups with each rule's health and state (/api/v1/rules)."""
        return dict(_get(f"{self.url}/api/v1/rules")["data"])

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts, pending or firing (/api/v1/alerts): ``labels``, ``state``, ``activeAt``."""
        return list(_get(f"{self.url}/api/v1/alerts")["data"]["alerts"])

    def targets(self, job: str) -> set[str]:
        """The ``instance`` of every target of ``job`` Prometheus has discovered, scraped yet or not."""
        active = _get(f"{self.url}/api/v1/targets?state=active")["data"]["activeTargets"]
        return {t["labels"]["instance"] for t in active if t["labels"].get("job") == job}

    def scalar(self, expr: str) -> float | None:
        samples = self.query(expr)
        return float(samples[0]["value"][1]) if samples else None

    def exemplars(self, expr: str, seconds: float = 900) -> list[dict[str, Any]]:
        """Exemplars of the series ``expr`` selects over the last ``seconds``, flattened:
        ``[{"labels": {"trace_id": ...}, "value": "0.25", "timestamp": ...,
        "series": {...}}]``."""
        now = time.time()
        params = urllib.parse.urlencode({"query": expr, "start": now - seconds, "end": now})
        body = _get(f"{self.url}/api/v1/query_exemplars?{params}")
        return [
            {**exemplar, "series": group["seriesLabels"]}
            for group in body["data"]
            for exemplar in group["exemplars"]
        ]


class VictoriaLogs:
    """The log store's LogsQL API (docs.victoriametrics.com/victorialogs/querying/)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, logsql: str, *, limit: int = 100) -> list[dict[str, str]]:
        """The newest ``limit`` records matching ``logsql``, newest first; each a flat object of
        fields (``_msg``, ``_time``, ``trace_id``, ``service.name``, …), values as strings."""
        params = urllib.parse.urlencode({"query": f"{logsql} | sort by (_time) desc", "limit": limit})
        with urllib.request.urlopen(f"{self.url}/select/logsql/query?{params}", timeout=10) as response:
            return [json.loads(line) for line in response.read().decode().splitlines() if line]

    def of_trace(self, trace_id: str) -> list[dict[str, str]]:
        """Every record written on behalf of the trace ``trace_id``, oldest first."""
        return self.query(f'trace_id:="{trace_id}"', limit=1000)[::-1]

    def ui_url(self, logsql: str) -> str:
        """The web UI's page showing ``logsql``'s result (its hash route takes the query)."""
        return f"{self.url}/select/vmui/#/?query={urllib.parse.quote(logsql)}"


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    name: str
    kind: str
    duration_us: int
    tags: dict[str, Any] = field(default_factory=dict, compare=False)
    resource: dict[str, Any] = field(default_factory=dict, compare=False)  # its process's tags


# How many traces the in-memory store keeps (jaeger/config.yaml, the file both engines run).
JAEGER_MAX_TRACES: int = yaml.safe_load((REPO / "jaeger/config.yaml").read_text())["extensions"][
    "jaeger_storage"
]["backends"]["memstore"]["memory"]["max_traces"]


class Jaeger:
    def __init__(self, url: str) -> None:
        self.url = url

    def services(self) -> list[str]:
        return list(_get(f"{self.url}/api/services")["data"] or [])

    def traces(self, service: str, *, limit: int = 20, operation: str | None = None) -> list[list[Span]]:
        """The newest ``limit`` traces of ``service`` in the last hour; at most the store's
        ``max_traces`` (Jaeger's memory store refuses a deeper search with HTTP 500)."""
        params = {"service": service, "limit": str(min(limit, JAEGER_MAX_TRACES)), "lookback": "1h"}
        if operation:
            params["operation"] = operation
        body = _get(f"{self.url}/api/traces?{urllib.parse.urlencode(params)}")
        return [_spans(trace) for trace in body["data"] or []]

    def trace(self, trace_id: str) -> list[Span] | None:
        try:
            body = _get(f"{self.url}/api/traces/{trace_id}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise
        traces = body["data"] or []
        return _spans(traces[0]) if traces else None


def _spans(trace: dict[str, Any]) -> list[Span]:
    processes = trace["processes"]
    spans = []
    for span in trace["spans"]:
        parent = next((ref["spanID"] for ref in span["references"] if ref["refType"] == "CHILD_OF"), None)
        tags = {tag["key"]: tag["value"] for tag in span["tags"]}
        spans.append(
            Span(
                trace_id=span["traceID"],
                span_id=span["spanID"],
                parent_id=parent,
                service=processes[span["processID"]]["serviceName"],
                name=span["operationName"],
                kind=tags.get("span.kind", ""),
                duration_us=span["duration"],
                tags=tags,
                resource={tag["key"]: tag["value"] for tag in processes[span["processID"]]["tags"]},
            )
        )
    return spans


STORE_SPAN = re.compile(r"^(SELECT|INSERT|UPDATE|DELETE) users$")


def end_to_end_trace(jaeger: Jaeger, client_service: str = "user-service-loadgen") -> list[Span] | None:
    """A recent trace in which a client span of ``client_service`` is the parent of the
    service's server span, which has store spans below it; None if there is none yet."""
    for spans in jaeger.traces(client_service, limit=50):
        by_id = {span.span_id: span for span in spans}
        for span in spans:
            parent = by_id.get(span.parent_id or "")
            if (
                span.service == "user-service"
                and span.kind == "server"
                and parent is not None
                and parent.service == client_service
                and parent.kind == "client"
                and any(STORE_SPAN.match(child.name) and child.parent_id == span.span_id for child in spans)
            ):
                return spans
    return None


def tree(spans: list[Span]) -> Iterator[tuple[int, Span]]:
    """(depth, span) in depth-first order from the trace's root(s), children by start order."""
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_id if span.parent_id in ids else None, []).append(span)

    def walk(parent: str | None, depth: int) -> Iterator[tuple[int, Span]]:
        for span in children.get(parent, []):
            yield depth, span
            yield from walk(span.span_id, depth + 1)

    yield from walk(None, 0)


def format_tree(spans: list[Span], note: Callable[[Span], str] = lambda _: "") -> str:
    """The trace as an indented tree, one span a line; ``note`` adds to a span's line."""
    return "\n".join(
        f"{'  ' * depth}{span.service:<22} {span.kind:<8} {span.name}  {span.duration_us / 1000:.1f} ms"
        + note(span)
        for depth, span in tree(spans)
    )


def eventually(probe: Callable[[], T | None], timeout: float, interval: float = 0.25) -> T | None:
    """``probe()``'s first truthy result within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)
