"""The Grafana dashboards, written as code with Grafana's Foundation SDK (typed builders for the
dashboard schema of the pinned Grafana) and committed as the JSON Grafana provisions:

    python -m scripts.dashboards            # rewrite grafana/dashboards/*.json and grafana/PANELS.md
    python -m scripts.dashboards --check    # exit 1 if they differ from what this file generates

Every panel says in its description which question it answers; grafana/PANELS.md lists them.
Every PromQL expression here runs against a real Prometheus in tests/stack (none may come back
empty after a load run), and every datasource a panel names is one grafana/provisioning sets up.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, logs, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models.common import (
    DataSourceRef,
    LegendDisplayMode,
    LegendPlacement,
    LogsSortOrder,
    StackingMode,
)
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, VariableOption, VariableRefresh

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "grafana" / "dashboards"
PANELS_DOC = REPO / "grafana" / "PANELS.md"
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="prometheus")  # grafana/provisioning
VICTORIALOGS = DataSourceRef(type_val="victoriametrics-logs-datasource", uid="victorialogs")
SERVICE = 'grpc_service="user.v1.UserService"'
SELECTED = f'{SERVICE}, grpc_method=~"$method", grpc_type=~"$type"'
LOADGEN = 'job="user-service-loadgen"'
RATE = "[$__rate_interval]"
STREAMS = f'{SERVICE}, grpc_type!="unary"'


def rate(metric: str, selector: str = "") -> str:
    return f"rate({metric}{{{selector}}}{RATE})"


def sum_by(labels: str, inner: str) -> str:
    return f"sum by ({labels}) ({inner})"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    exemplars: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    answers: str  # the question the panel answers: its description in Grafana and in PANELS.md
    queries: tuple[Query, ...]
    unit: str = "short"
    stacked: bool = False
    single_value: bool = False
    width: int = 12

    def build(self) -> timeseries.Panel | stat.Panel:
        builder = stat.Panel() if self.single_value else timeseries.Panel()
        builder.title(self.title).description(self.answers).datasource(PROMETHEUS).unit(self.unit)
        builder.span(self.width).height(8)
        for ref, query in zip("ABCDEFGH", self.queries, strict=False):
            target = prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref)
            target.datasource(PROMETHEUS).range()
            if query.exemplars:
                target.exemplar(True)
            builder.with_target(target)
        if isinstance(builder, timeseries.Panel):
            builder.legend(
                common_builders.VizLegendOptions()
                .display_mode(LegendDisplayMode.TABLE)
                .placement(LegendPlacement.BOTTOM)
                .show_legend(True)
                .calcs(["lastNotNull", "max"])
            )
            if self.stacked:
                builder.stacking(common_builders.StackingConfig().mode(StackingMode.NORMAL)).fill_opacity(30)
        return builder


class LogsQuery(Dataquery):
    """A VictoriaLogs datasource query (plugin victoriametrics-logs-datasource, src/types.ts):
    ``expr`` is LogsQL; ``instant`` is the plugin's query type for log lines (it calls
    /select/logsql/query), ``maxLines`` its limit. The Foundation SDK has no model for it."""

    def __init__(self, expr: str, max_lines: int) -> None:
        self.expr, self.max_lines = expr, max_lines

    def to_json(self) -> dict[str, object]:
        return {
            "refId": "A",
            "datasource": VICTORIALOGS.to_json(),
            "editorMode": "code",
            "queryType": "instant",
            "expr": self.expr,
            "maxLines": self.max_lines,
        }


class _LogsQueryBuilder(Builder[Dataquery]):
    def __init__(self, query: LogsQuery) -> None:
        self._query = query

    def build(self) -> Dataquery:
        return self._query


@dataclass(frozen=True)
class LogsPanel:
    """Log lines from VictoriaLogs: ``logsql`` with the dashboard's variables in it. The test
    runs it (variables at their "All" value) against a real VictoriaLogs."""

    title: str
    answers: str
    logsql: str
    max_lines: int = 100
    width: int = 24

    def build(self) -> logs.Panel:
        builder = logs.Panel().title(self.title).description(self.answers).datasource(VICTORIALOGS)
        builder.span(self.width).height(10).show_time(True).wrap_log_message(True)
        builder.enable_log_details(True).sort_order(LogsSortOrder.DESCENDING)
        return builder.with_target(_LogsQueryBuilder(LogsQuery(self.logsql, self.max_lines)))


@dataclass(frozen=True)
class Annotation:
    """Events drawn across every panel, from a Prometheus query: one mark while it has a series."""

    name: str
    expr: str
    title: str  # Grafana's titleFormat: {{label}} placeholders
    tags: str  # the labels shown as the event's tags, comma separated
    color: str

    def build(self) -> dashboard.AnnotationQuery:
        return (
            dashboard.AnnotationQuery()
            .name(self.name)
            .datasource(PROMETHEUS)
            .expr(self.expr)
            .enable(True)
            .icon_color(self.color)
        )

    def options(self) -> dict[str, str]:
        """The Prometheus annotation options the SDK's model lacks (grafonnet sets the same)."""
        return {"titleFormat": self.title, "tagKeys": self.tags, "step": "15s"}


# Which fault flags are on (user_service_fault_flag per replica, loadgen_fault_flag per load
# generator process): "userServiceLatency on at 12:03".
FAULTS_ON = Annotation(
    "Fault flags on",
    "max by (flag, variant, instance)"
    ' (user_service_fault_flag{variant!="off"} == 1 or loadgen_fault_flag{variant!="off"} == 1)',
    "fault {{flag}} = {{variant}}",
    "flag,variant,instance",
    "red",
)


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    description: str
    rows: tuple[tuple[str, tuple[Panel | LogsPanel, ...]], ...]
    method_variables: bool = False
    annotations: tuple[Annotation, ...] = ()

    def build(self) -> dashboard.Dashboard:
        builder = (
            dashboard.Dashboard(self.title)
            .uid(self.uid)
            .description(self.description)
            .tags(["user-service"])
            .refresh("5s")
            .time("now-15m", "now")
            .timezone("browser")
            .tooltip(DashboardCursorSync.CROSSHAIR)
            .readonly()
        )
        if self.method_variables:
            # grpc_code: only the logs panel filters by it (the metrics panels show every code).
            for name, label, metric in (
                ("method", "grpc_method", "grpc_server_started_total"),
                ("type", "grpc_type", "grpc_server_started_total"),
                ("code", "grpc_code", "grpc_server_handled_total"),
            ):
                builder.with_variable(
                    dashboard.QueryVariable(name)
                    .label(label)
                    .datasource(PROMETHEUS)
                    .query(f"label_values({metric}{{{SERVICE}}}, {label})")
                    .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                    .multi(True)
                    .include_all(True)
                    .all_value(".*")
                    .current(VariableOption(selected=True, text="All", value="$__all"))
                )
        for annotation in self.annotations:
            builder.annotation(annotation.build())
        for title, panels in self.rows:
            builder.with_row(dashboard.Row(title))
            for panel in panels:
                builder.with_panel(panel.build())
        return builder

    def panels(self) -> list[Panel | LogsPanel]:
        return [panel for _, panels in self.rows for panel in panels]

    def metrics_panels(self) -> list[Panel]:
        return [panel for panel in self.panels() if isinstance(panel, Panel)]

    def logs_panels(self) -> list[LogsPanel]:
        return [panel for panel in self.panels() if isinstance(panel, LogsPanel)]


def quantiles(
    metric: str, selector: str, by: str, legend: str, *, exemplars: bool = False
) -> tuple[Query, ...]:
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by ({by}le) (rate({metric}_bucket{{{selector}}}{RATE})))",
            f"{legend} p{int(q * 100)}",
            exemplars=exemplars and q == 0.99,
        )
        for q in (0.5, 0.95, 0.99)
    )


RED = Board(
    uid="user-service-red",
    title="user-service · gRPC RED",
    description="Rate, errors and duration of every RPC the service handles, per method and RPC type "
    "(go-grpc-middleware metric names, as community gRPC dashboards use them).",
    method_variables=True,
    annotations=(FAULTS_ON,),
    rows=(
        (
            "Rate",
            (
                Panel(
                    "Requests per second by method",
                    "How many RPCs per second does each method complete, whatever their outcome?",
                    (
                        Query(
                            sum_by(
                                "grpc_type, grpc_method",
                                f"grpc_method:grpc_server_handled:rate1m{{{SELECTED}}}",
                            ),
                            "{{grpc_method}} ({{grpc_type}})",
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Requests per second by replica",
                    "Is the load spread over every replica (client-side round robin)? A replica whose "
                    "rate falls to zero while the others rise is draining or failing its health check.",
                    (Query(sum_by("instance", rate("grpc_server_handled_total", SELECTED)), "{{instance}}"),),
                    unit="reqps",
                ),
                Panel(
                    "RPCs in flight",
                    "How many RPCs are running right now, per method (held streams included)?",
                    (
                        Query(
                            f"sum by (grpc_method) (grpc_server_started_total{{{SELECTED}}})"
                            f" - sum by (grpc_method) (grpc_server_handled_total{{{SELECTED}}})",
                            "{{grpc_method}}",
                        ),
                    ),
                ),
            ),
        ),
        (
            "Errors",
            (
                Panel(
                    "Responses by status code",
                    "Which status codes does the service answer with? Caller mistakes (InvalidArgument, "
                    "NotFound, …) are answers; Unavailable, Internal, Unknown, DeadlineExceeded are "
                    "failures.",
                    (
                        Query(
                            f"sum by (grpc_code) (grpc_method_code:grpc_server_handled:rate1m{{{SELECTED}}})",
                            "{{grpc_code}}",
                        ),
                    ),
                    unit="reqps",
                    stacked=True,
                ),
                Panel(
                    "Server error ratio by method",
                    "Which methods fail their callers, and how often? (The availability SLO allows 0.1 %.)",
                    (
                        Query(
                            f"grpc_method:grpc_server_errors:ratio_rate1m{{{SELECTED}}}",
                            "{{grpc_method}} ({{grpc_type}})",
                        ),
                    ),
                    unit="percentunit",
                ),
                Panel(
                    "Error budget burn rate",
                    "How fast is the availability error budget burning? 1 = exactly on budget; the page "
                    "fires above 14.4 over both 1 h and 5 min.",
                    (
                        Query(f"grpc_service:grpc_server_errors:ratio_rate1h{{{SERVICE}}} / 0.001", "1 h"),
                        Query(f"grpc_service:grpc_server_errors:ratio_rate5m{{{SERVICE}}} / 0.001", "5 min"),
                    ),
                    unit="x",
                ),
                Panel(
                    "Latency budget burn rate",
                    "How fast is the latency budget (99 % of unary calls under 250 ms) burning? "
                    "1 = on budget.",
                    (
                        Query(f"grpc_service:grpc_server_slow_calls:ratio_rate1h{{{SERVICE}}} / 0.01", "1 h"),
                        Query(
                            f"grpc_service:grpc_server_slow_calls:ratio_rate5m{{{SERVICE}}} / 0.01", "5 min"
                        ),
                    ),
                    unit="x",
                ),
            ),
        ),
        (
            "Duration",
            (
                Panel(
                    "Unary latency by method",
                    "How long do unary calls take, per method, at the median, p95 and p99?",
                    tuple(
                        Query(
                            f"grpc_method:grpc_server_handling_seconds:{p}_rate1m"
                            f'{{{SERVICE}, grpc_method=~"$method"}}',
                            f"{{{{grpc_method}}}} {p}",
                        )
                        for p in ("p50", "p95", "p99")
                    ),
                    unit="s",
                ),
                Panel(
                    "Unary latency with exemplars",
                    "Which requests were slow? Each dot is an exemplar: a sampled request in that latency "
                    "bucket; click it to open its trace in Jaeger.",
                    quantiles(
                        "grpc_server_handling_seconds",
                        f'{SERVICE}, grpc_type="unary", grpc_method=~"$method"',
                        "",
                        "all methods",
                        exemplars=True,
                    ),
                    unit="s",
                ),
            ),
        ),
        (
            "Resources",
            (
                Panel(
                    "Store latency by operation",
                    "How long do the store's statements take (median, p95, p99 per operation)? Each dot "
                    "on p99 is an exemplar: a sampled call whose trace shows the slow statement.",
                    quantiles(
                        "db_client_operation_duration_seconds",
                        'job="user-service"',
                        "db_operation_name, ",
                        "{{db_operation_name}}",
                        exemplars=True,
                    ),
                    unit="s",
                ),
                Panel(
                    "Store connection wait",
                    "How long do statements wait for a connection (p99 per replica), and which share "
                    "waits over 25 ms? Waiting means the pool is too small or connections are held too "
                    "long.",
                    (
                        Query(
                            "histogram_quantile(0.99, sum by (instance, le) "
                            f'(rate(db_client_connection_wait_time_seconds_bucket{{job="user-service"}}{RATE})))',
                            "{{instance}} p99",
                        ),
                        Query(
                            "1 - sum by (instance) (rate(db_client_connection_wait_time_seconds_bucket"
                            f'{{job="user-service", le="0.025"}}{RATE})) / sum by (instance) '
                            f'(rate(db_client_connection_wait_time_seconds_count{{job="user-service"}}{RATE}))',
                            "{{instance}} share over 25 ms",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "CPU per replica",
                    "How much of its one core does each replica use? A replica's event loop runs on one "
                    "core: near 100 % it cannot take more, and calls queue.",
                    (
                        Query(
                            sum_by("instance", rate("process_cpu_seconds_total", 'job="user-service"')),
                            "{{instance}}",
                        ),
                    ),
                    unit="percentunit",
                ),
                Panel(
                    "Memory per replica",
                    "How much memory does each replica hold (resident set)? Steady under steady load; a "
                    "line that keeps climbing is a leak.",
                    (
                        Query(
                            sum_by("instance", 'process_resident_memory_bytes{job="user-service"}'),
                            "{{instance}}",
                        ),
                    ),
                    unit="bytes",
                ),
                Panel(
                    "Fault flags by variant",
                    "Which variant of each fault flag are the replicas running (how many replicas each)? "
                    "Anything but off is a fault on purpose (`make faults`); the red marks on every panel "
                    "show when one was on.",
                    (Query("count by (flag, variant) (user_service_fault_flag)", "{{flag}} = {{variant}}"),),
                    width=24,
                ),
            ),
        ),
        (
            "Logs",
            (
                LogsPanel(
                    "Access lines of failed and slow calls",
                    "What did the service write about the calls that failed or were slow (method, code, "
                    "duration, peer, caller)? Filtered by the method, type and code above; a line's "
                    "trace_id opens its trace in Jaeger (sampled calls: trace_sampled=true).",
                    'service.name:="user-service" scope.name:="user_service.access" '
                    'rpc_method:~"^($method)$" grpc_type:~"^($type)$" grpc_code:~"^($code)$"',
                ),
            ),
        ),
    ),
)

STREAMING = Board(
    uid="user-service-streaming",
    title="user-service · streaming",
    description="The change feed and the streams that carry it: subscribers, messages, delivery lag, "
    "cut-offs.",
    annotations=(FAULTS_ON,),
    rows=(
        (
            "Subscribers",
            (
                Panel(
                    "Active subscribers",
                    "How many SubscribeUsers streams are open right now?",
                    (Query("sum(user_service_subscribers)", "subscribers"),),
                    single_value=True,
                    width=6,
                ),
                Panel(
                    "Open streams by method",
                    "How many streams of each kind are open (client, server and bidi streaming)?",
                    (
                        Query(
                            sum_by("grpc_method", f"grpc_server_started_total{{{STREAMS}}}")
                            + " - "
                            + sum_by("grpc_method", f"grpc_server_handled_total{{{STREAMS}}}"),
                            "{{grpc_method}}",
                        ),
                    ),
                    width=18,
                ),
                Panel(
                    "Subscriber cut-offs by reason",
                    "How many subscriptions did the server end in the last 5 minutes, and why? too_slow: the "
                    "subscriber fell behind its buffer (it gets RESOURCE_EXHAUSTED and its resume point); "
                    "shutdown: the server stopped.",
                    (
                        Query(
                            "sum by (reason) (increase(user_service_subscriber_cutoffs_total[5m]))",
                            "{{reason}}",
                        ),
                    ),
                ),
                Panel(
                    "Stream ends by status code",
                    "How do streams end? OK, Canceled by the client, DeadlineExceeded, ResourceExhausted "
                    "(cut off), Unauthenticated (token expired mid-stream)…",
                    (
                        Query(
                            sum_by("grpc_method, grpc_code", rate("grpc_server_handled_total", STREAMS)),
                            "{{grpc_method}} {{grpc_code}}",
                        ),
                    ),
                    unit="reqps",
                ),
            ),
        ),
        (
            "Feed",
            (
                Panel(
                    "Change events per second by type",
                    "How many user changes per second does the feed publish (created, updated, deleted)?",
                    (
                        Query(
                            f"sum by (type) (rate(user_service_events_published_total{RATE}))",
                            "{{type}}",
                        ),
                    ),
                    unit="short",
                    stacked=True,
                ),
                Panel(
                    "Stream messages per second",
                    "How many messages do the streaming methods send (SubscribeUsers: events delivered) and "
                    "receive?",
                    (
                        Query(
                            sum_by("grpc_method", rate("grpc_server_msg_sent_total", STREAMS)),
                            "{{grpc_method}} sent",
                        ),
                        Query(
                            sum_by("grpc_method", rate("grpc_server_msg_received_total", STREAMS)),
                            "{{grpc_method}} received",
                        ),
                    ),
                    unit="short",
                ),
                Panel(
                    "Delivery lag",
                    "How long after its commit does a change reach a subscriber (median, p95, p99; "
                    "replays of old events included)?",
                    quantiles("user_service_event_delivery_lag_seconds", "", "", "delivery"),
                    unit="s",
                ),
                Panel(
                    "Events published per second by replica",
                    "Is every replica's change feed moving? Each replica's relay publishes every "
                    "committed event; one at zero while the others publish has stalled "
                    "(UserServiceFeedStalled) and its subscribers see nothing new.",
                    (
                        Query(
                            f"sum by (instance) (rate(user_service_events_published_total{RATE}))",
                            "{{instance}}",
                        ),
                    ),
                    unit="short",
                ),
            ),
        ),
    ),
)

LOAD = Board(
    uid="user-service-load",
    title="user-service · load run",
    description="What the Locust load generator drives (its own metrics, pushed over OTLP: every "
    "request, not only the sampled ones) beside what the service sees.",
    rows=(
        (
            "What Locust drives",
            (
                Panel(
                    "Locust users",
                    "How many simulated users are running (summed over Locust's worker processes)?",
                    (Query(f"sum(loadgen_users{{{LOADGEN}}})", "users"),),
                    single_value=True,
                    width=6,
                ),
                Panel(
                    "Requests per second by request",
                    "What is the load generator doing: requests per second per RPC (or streaming step), as "
                    "Locust counts them?",
                    (
                        Query(
                            sum_by(
                                "grpc_type, request_name",
                                rate("loadgen_request_duration_seconds_count", LOADGEN),
                            ),
                            "{{request_name}} ({{grpc_type}})",
                        ),
                    ),
                    unit="reqps",
                    width=18,
                ),
                Panel(
                    "Load generator failure ratio",
                    "Which share of the load generator's requests failed? (0 when none did.)",
                    (
                        Query(
                            "(sum("
                            + rate("loadgen_request_duration_seconds_count", f'{LOADGEN}, error_type!=""')
                            + ") or vector(0)) / sum("
                            + rate("loadgen_request_duration_seconds_count", LOADGEN)
                            + ")",
                            "failed",
                        ),
                    ),
                    unit="percentunit",
                ),
                Panel(
                    "Load generator share of the service's unary calls",
                    "Which share of the unary calls the service completes comes from the load generator "
                    "(the rest: real clients)?",
                    (
                        Query(
                            "sum("
                            + rate(
                                "loadgen_request_duration_seconds_count",
                                f'{LOADGEN}, grpc_type="unary", request_name!="Login"',
                            )
                            + ") / "
                            + f'sum(grpc_method:grpc_server_handled:rate1m{{{SERVICE}, grpc_type="unary"}})',
                            "load generator",
                        ),
                    ),
                    unit="percentunit",
                ),
            ),
        ),
        (
            "Client vs server",
            (
                Panel(
                    "p99 as the client saw it vs as the server saw it",
                    "Where does the time go? The gap between the client's p99 and the server's is the "
                    "network, the client's own queueing and grpc's transport.",
                    (
                        Query(
                            "histogram_quantile(0.99, "
                            + sum_by(
                                "request_name, le",
                                rate(
                                    "loadgen_request_duration_seconds_bucket", f'{LOADGEN}, grpc_type="unary"'
                                ),
                            )
                            + ")",
                            "{{request_name}} client p99",
                        ),
                        Query(
                            f"grpc_method:grpc_server_handling_seconds:p99_rate1m{{{SERVICE}}}",
                            "{{grpc_method}} server p99",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Traced load generator calls, with exemplars",
                    "How slow are the traced calls the load generator makes, and which trace shows a slow "
                    "one? (Span metrics from the Collector count sampled calls only; click a dot for its "
                    "trace.)",
                    (
                        Query(
                            "sum by (span_name) (rate(traces_span_metrics_calls_total"
                            f'{{service_name="user-service-loadgen", span_kind="SPAN_KIND_CLIENT"}}{RATE}))',
                            "{{span_name}} traced/s",
                        ),
                        *quantiles(
                            "traces_span_metrics_duration_seconds",
                            'service_name="user-service-loadgen", span_kind="SPAN_KIND_CLIENT"',
                            "",
                            "traced calls",
                            exemplars=True,
                        )[2:],
                    ),
                    unit="short",
                ),
            ),
        ),
    ),
)

PIPELINE = Board(
    uid="user-service-pipeline",
    title="user-service · telemetry pipeline",
    description="Is telemetry getting through? Spans from the SDKs through the Collector to Jaeger, log "
    "records to VictoriaLogs, their queues, their drops, and the scrape targets.",
    rows=(
        (
            "Spans",
            (
                Panel(
                    "Spans received, by receiver",
                    "How many spans per second do the Collector and Jaeger accept — and refuse (memory "
                    "limit)?",
                    (
                        Query(
                            f"sum by (job) (rate(otelcol_receiver_accepted_spans_total{RATE}))",
                            "{{job}} accepted",
                        ),
                        Query(
                            f"sum by (job) (rate(otelcol_receiver_refused_spans_total{RATE}))",
                            "{{job}} refused",
                        ),
                    ),
                    unit="short",
                ),
                Panel(
                    "Spans exported, by exporter",
                    "How many spans per second leave the Collector for Jaeger (and Jaeger for its store), "
                    "and how many fail (Jaeger down, queue full)?",
                    (
                        Query(
                            f"sum by (job, exporter) (rate(otelcol_exporter_sent_spans_total{RATE}))",
                            "{{job}} {{exporter}} sent",
                        ),
                        Query(
                            f"sum by (job, exporter) (rate(otelcol_exporter_send_failed_spans_total{RATE}))",
                            "{{job}} {{exporter}} failed",
                        ),
                    ),
                    unit="short",
                ),
                Panel(
                    "Collector export queue",
                    "How full are the Collector's queues towards Jaeger and VictoriaLogs? At capacity, new "
                    "batches are dropped.",
                    (
                        Query("sum by (exporter) (otelcol_exporter_queue_size)", "{{exporter}} size"),
                        Query("sum by (exporter) (otelcol_exporter_queue_capacity)", "{{exporter}} capacity"),
                    ),
                ),
                Panel(
                    "Service SDK: spans processed by outcome",
                    "Does the service's OpenTelemetry SDK keep up? Spans per second it hands to export, and "
                    "those it drops (error_type, e.g. queue_full).",
                    (
                        Query(
                            f"sum by (error_type) (rate(otel_sdk_processor_span_processed_total{RATE}))",
                            "{{error_type}}",
                        ),
                        Query("sum(otel_sdk_processor_span_queue_size)", "queue size"),
                    ),
                ),
            ),
        ),
        (
            "Logs",
            (
                Panel(
                    "Log records through the Collector",
                    "How many log records per second does the Collector accept, send to VictoriaLogs, "
                    "and fail to send (VictoriaLogs down, queue full)?",
                    (
                        Query(f"sum(rate(otelcol_receiver_accepted_log_records_total{RATE}))", "accepted"),
                        Query(
                            f"sum by (exporter) (rate(otelcol_exporter_sent_log_records_total{RATE}))",
                            "{{exporter}} sent",
                        ),
                        # The Collector makes the failure series at the first failure: until then the
                        # exporters that sent anything show 0 failed instead of no data.
                        Query(
                            f"sum by (exporter) (rate(otelcol_exporter_send_failed_log_records_total{RATE}))"
                            " or 0 * "
                            f"sum by (exporter) (rate(otelcol_exporter_sent_log_records_total{RATE}))",
                            "{{exporter}} failed",
                        ),
                    ),
                ),
                Panel(
                    "Service SDK: log records processed by outcome",
                    "Does the service's logs pipeline keep up? Records per second it hands to export, and "
                    "those it drops (error_type, e.g. queue_full: the oldest go first).",
                    (
                        Query(
                            f"sum by (error_type) (rate(otel_sdk_processor_log_processed_total{RATE}))",
                            "{{error_type}}",
                        ),
                        Query("sum(otel_sdk_processor_log_queue_size)", "queue size"),
                    ),
                ),
                Panel(
                    "Rows stored by VictoriaLogs",
                    "How many log rows per second does VictoriaLogs store, by how they came in (OTLP)?",
                    (Query(f"sum by (type) (rate(vl_rows_ingested_total{RATE}))", "{{type}}"),),
                ),
            ),
        ),
        (
            "Components",
            (
                Panel(
                    "Scrape targets up",
                    "Can Prometheus reach every component (1 = up)?",
                    (Query("up", "{{job}} {{instance}}"),),
                ),
                Panel(
                    "Memory of each component",
                    "How much memory does each component hold (resident set)?",
                    (
                        Query("sum by (job) (otelcol_process_memory_rss_bytes)", "{{job}}"),
                        Query(
                            "sum by (job) (process_resident_memory_bytes"
                            '{job=~"user-service|prometheus|victorialogs"})',
                            "{{job}}",
                        ),
                    ),
                    unit="bytes",
                ),
            ),
        ),
    ),
)

BOARDS = (RED, STREAMING, LOAD, PIPELINE)


def render(board: Board) -> str:
    document = json.loads(json.dumps(board.build().build(), cls=JSONEncoder))
    for entry in document.get("annotations", {}).get("list", []):
        entry.update(next(a.options() for a in board.annotations if a.name == entry["name"]))
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def panels_doc() -> str:
    lines = [
        "# Dashboard panels and the questions they answer",
        "",
        "Generated by `python -m scripts.dashboards` from the same code as the dashboards; do not edit.",
    ]
    for board in BOARDS:
        lines += [
            "",
            f"## {board.title} (`{board.uid}`)",
            "",
            board.description,
            "",
            "| panel | answers |",
            "|---|---|",
        ]
        lines += [f"| {panel.title} | {panel.answers} |" for panel in board.panels()]
    return "\n".join(lines) + "\n"


def outputs() -> dict[Path, str]:
    files = {OUTPUT / f"{board.uid}.json": render(board) for board in BOARDS}
    files[PANELS_DOC] = panels_doc()
    return files


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    check = parser.parse_args().check
    stale = [path for path, text in outputs().items() if not path.exists() or path.read_text() != text]
    if check:
        for path in stale:
            print(f"{path.relative_to(REPO)} is not what scripts/dashboards.py generates", file=sys.stderr)
        return 1 if stale else 0
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for path, text in outputs().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
