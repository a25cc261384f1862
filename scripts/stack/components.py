"""The native stack's processes: what each one runs, with which environment, and how to tell
it is ready. The configuration files are the repository's own (the ones compose mounts); only
addresses differ, passed as the environment variables those files read."""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scripts.stack.plan import REPO, StackPlan

TOOLS_DIR = Path(os.environ.get("TOOLS_DIR", Path.home() / ".cache/user-service/tools/bin"))


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    url: str  # what a user opens or queries
    env: dict[str, str] = field(default_factory=dict)


def components(plan: StackPlan, service_env: dict[str, str]) -> list[Component]:
    """In start order: the trace and log stores first, so the Collector's first export finds them."""
    ports = plan.ports
    loopback = "127.0.0.1"
    return [
        Component(
            "victorialogs",
            [
                _binary("victoria-logs"),
                f"-httpListenAddr={loopback}:{ports.victorialogs}",
                f"-storageDataPath={plan.run_dir / 'victorialogs'}",
                # As Prometheus keeps two days: a demo stack's logs, not an archive.
                "-retentionPeriod=2d",
            ],
            ready=lambda: _http_ok(f"http://{loopback}:{ports.victorialogs}/health"),
            url=f"http://{loopback}:{ports.victorialogs}/select/vmui/ (web UI; LogsQL: /select/logsql/query)",
        ),
        Component(
            "jaeger",
            [_binary("jaeger"), "--config", str(REPO / "jaeger/config.yaml")],
            ready=lambda: _http_ok(f"http://{loopback}:{ports.jaeger_health}/status"),
            url=f"http://{loopback}:{ports.jaeger_query} (HTTP API; the UI assets are not in the Go module)",
            env={
                "JAEGER_OTLP_GRPC_ENDPOINT": f"{loopback}:{ports.jaeger_otlp}",
                "JAEGER_HEALTH_ENDPOINT": f"{loopback}:{ports.jaeger_health}",
                "JAEGER_QUERY_HTTP_ENDPOINT": f"{loopback}:{ports.jaeger_query}",
                "JAEGER_QUERY_GRPC_ENDPOINT": f"{loopback}:{ports.jaeger_query_grpc}",
                "JAEGER_METRICS_HOST": loopback,
                "JAEGER_METRICS_PORT": str(ports.jaeger_metrics),
            },
        ),
        Component(
            "otel-collector",
            [_binary("otelcol-user-service"), "--config", str(REPO / "otel-collector/config.yaml")],
            ready=lambda: _http_ok(f"http://{loopback}:{ports.collector_health}/"),
            url=f"{loopback}:{ports.otlp_grpc} (OTLP gRPC), :{ports.otlp_http} (OTLP HTTP)",
            env={
                "OTELCOL_OTLP_GRPC_ENDPOINT": f"{loopback}:{ports.otlp_grpc}",
                "OTELCOL_OTLP_HTTP_ENDPOINT": f"{loopback}:{ports.otlp_http}",
                "OTELCOL_HEALTH_ENDPOINT": f"{loopback}:{ports.collector_health}",
                "OTELCOL_JAEGER_ENDPOINT": f"{loopback}:{ports.jaeger_otlp}",
                "OTELCOL_VICTORIALOGS_ENDPOINT": f"http://{loopback}:{ports.victorialogs}",
                "OTELCOL_PROMETHEUS_ENDPOINT": f"{loopback}:{ports.span_metrics}",
                "OTELCOL_METRICS_HOST": loopback,
                "OTELCOL_METRICS_PORT": str(ports.collector_metrics),
            },
        ),
        Component(
            "prometheus",
            [
                _binary("prometheus"),
                f"--config.file={_prometheus_config(plan)}",
                f"--storage.tsdb.path={plan.run_dir / 'prometheus/data'}",
                "--storage.tsdb.retention.time=2d",
                f"--web.listen-address={loopback}:{ports.prometheus}",
                "--enable-feature=exemplar-storage",
            ],
            ready=lambda: _http_ok(f"http://{loopback}:{ports.prometheus}/-/ready"),
            url=f"http://{loopback}:{ports.prometheus} (HTTP API; this Go build has no web UI)",
        ),
        *(
            _service(plan, name, grpc, metrics, service_env)
            for name, (grpc, metrics) in zip(plan.replicas_by_name(), plan.replica_ports(), strict=True)
        ),
    ]


def _service(plan: StackPlan, name: str, grpc_port: int, metrics_port: int, env: dict[str, str]) -> Component:
    """The replica ``name`` of the service. Replicas share one SQLite file: the outbox relay of
    each delivers the others' writes to its subscribers."""
    target = f"127.0.0.1:{grpc_port}"
    return Component(
        name,
        [
            str(Path(sys.executable).with_name("user-service")),
            *("serve", "--host", "127.0.0.1", "--port", str(grpc_port), "--metrics-port", str(metrics_port)),
            *("--workers", "1"),  # a replica is one process, as a container or a pod is
        ],
        ready=lambda: _serving(target),
        url=f"{target} (gRPC), http://127.0.0.1:{metrics_port}/metrics",
        env={
            "USER_SERVICE_DATABASE_URL": f"sqlite:///{plan.run_dir / 'data/users.db'}",
            # Faults on purpose: every replica reads the plan's flag file (`make fault`; by
            # default the repository's), and is targeted by its component name.
            "USER_SERVICE_FLAGS_FILE": str(plan.flags_file),
            "USER_SERVICE_REPLICA": name,
            "OTEL_EXPORTER_OTLP_ENDPOINT": plan.otlp_endpoint,
            # Export every second (the SDK's default: 5 s) so a call is in Jaeger within
            # about two seconds; as in docker-compose.yml.
            "OTEL_BSP_SCHEDULE_DELAY": os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "1000"),
            **env,
        },
    )


def _binary(name: str) -> str:
    path = TOOLS_DIR / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise SystemExit(f"{name} is not built: run `make tools` (scripts/install-tools.sh stack)")
        return found
    return str(path)


def _prometheus_config(plan: StackPlan) -> Path:
    """The repository's prometheus.yml and rules (linked, so edits apply on a restart), with
    file_sd targets of this stack's loopback ports instead of the compose service names."""
    folder = plan.run_dir / "prometheus"
    (folder / "targets").mkdir(parents=True, exist_ok=True)
    for name in ("prometheus.yml", "rules"):
        link = folder / name
        link.unlink(missing_ok=True)
        link.symlink_to(REPO / "prometheus" / name)
    ports = plan.ports
    targets = {
        "user-service": [metrics for _, metrics in plan.replica_ports()],
        "otel-collector-exporter": [ports.span_metrics],
        "otel-collector": [ports.collector_metrics],
        "jaeger": [ports.jaeger_metrics],
        "victorialogs": [ports.victorialogs],
        "prometheus": [ports.prometheus],
    }
    for job, job_ports in targets.items():
        listed = ", ".join(f'"127.0.0.1:{port}"' for port in job_ports)
        (folder / "targets" / f"{job}.yml").write_text(f"- targets: [{listed}]\n")
    return folder / "prometheus.yml"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _serving(target: str) -> bool:
    """The gRPC health protocol, as compose's healthcheck and Kubernetes' probes ask it."""
    with grpc.insecure_channel(target) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
