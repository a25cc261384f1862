"""Where a native stack lives: its folder, its ports, its URLs — saved with it, so that
``make status``, ``make down`` and the demo find a stack started by someone else."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from user_service.listening import free_port

REPO = Path(__file__).resolve().parents[2]
# Where `make up` keeps the native stack; STACK_RUN_DIR puts another one elsewhere (the tests).
DEFAULT_RUN_DIR = Path(os.environ.get("STACK_RUN_DIR", REPO / ".stack"))
CREDENTIALS_DIR = REPO / ".dev" / "credentials"
# The fault flags every replica reads (`make fault` edits it; compose mounts the same folder).
FLAGS_FILE = REPO / "flags" / "demo.flagd.json"
# How many service replicas a native stack may run (STACK_REPLICAS): replica i listens on the
# gRPC and metrics ports of the plan plus i.
REPLICA_PORT_SPAN = 10


@dataclass(frozen=True)
class StackPorts:
    """The compose defaults where they do not clash on one host; Jaeger's OTLP, health and
    metrics ports move (the Collector holds 4317, 13133 and 8888). All below 32768."""

    grpc: int = 50051
    metrics: int = 9464
    otlp_grpc: int = 4317
    otlp_http: int = 4318
    collector_metrics: int = 8888
    span_metrics: int = 8889
    collector_health: int = 13133
    jaeger_query: int = 16686
    jaeger_query_grpc: int = 16685
    jaeger_otlp: int = 14317
    jaeger_health: int = 14133
    jaeger_metrics: int = 14269
    prometheus: int = 9090
    victorialogs: int = 9428

    @classmethod
    def free(cls) -> StackPorts:
        """Free ports for every component: a test's stack beside a developer's. Ten apart, so
        that replicas can take the ports after the service's (``StackPlan.replica_ports``)."""
        ports: set[int] = set()
        while len(ports) < len(cls.__dataclass_fields__):
            port = free_port()
            if all(abs(port - other) >= REPLICA_PORT_SPAN for other in ports):
                ports.add(port)
        return cls(*sorted(ports))


@dataclass(frozen=True)
class StackPlan:
    run_dir: Path = DEFAULT_RUN_DIR
    ports: StackPorts = field(default_factory=StackPorts)
    credentials_dir: Path = CREDENTIALS_DIR
    replicas: int = 1
    flags_file: Path = FLAGS_FILE

    def __post_init__(self) -> None:
        if not 1 <= self.replicas <= REPLICA_PORT_SPAN:
            raise ValueError(f"replicas must be 1 to {REPLICA_PORT_SPAN}, not {self.replicas}")

    def replica_ports(self) -> list[tuple[int, int]]:
        """(gRPC, metrics) port of each service replica."""
        return [(self.ports.grpc + i, self.ports.metrics + i) for i in range(self.replicas)]

    def replicas_by_name(self) -> dict[str, str]:
        """Each replica's component name (what ``make fault REPLICA=`` aims at) and its metrics
        address (Prometheus's ``instance`` label): "user-service", then "user-service-2", …"""
        return {
            "user-service" if i == 0 else f"user-service-{i + 1}": f"127.0.0.1:{metrics}"
            for i, (_, metrics) in enumerate(self.replica_ports())
        }

    @property
    def target(self) -> str:
        """The service: one address, or every replica's for client-side round robin."""
        if self.replicas == 1:
            return f"127.0.0.1:{self.ports.grpc}"
        return "ipv4:" + ",".join(f"127.0.0.1:{grpc}" for grpc, _ in self.replica_ports())

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.metrics}/metrics"

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.otlp_grpc}"

    @property
    def jaeger_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.jaeger_query}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.prometheus}"

    @property
    def victorialogs_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.victorialogs}"

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "plan.json").write_text(
            json.dumps(
                {
                    "ports": asdict(self.ports),
                    "credentials_dir": str(self.credentials_dir),
                    "replicas": self.replicas,
                    "flags_file": str(self.flags_file),
                },
                indent=2,
            )
        )

    @classmethod
    def load(cls, run_dir: Path = DEFAULT_RUN_DIR) -> StackPlan:
        """The plan a stack in ``run_dir`` was started with; the defaults if there is none."""
        saved = run_dir / "plan.json"
        if not saved.exists():
            return cls(run_dir)
        data = json.loads(saved.read_text())
        return cls(
            run_dir,
            StackPorts(**data["ports"]),
            Path(data["credentials_dir"]),
            data.get("replicas", 1),
            Path(data.get("flags_file", FLAGS_FILE)),
        )


def requested_replicas(plan: StackPlan, replicas: int | None = None) -> StackPlan:
    """``plan`` with the replica count asked for: ``replicas``, else STACK_REPLICAS, else its own."""
    wanted = replicas or int(os.environ.get("STACK_REPLICAS", "0") or 0)
    return replace(plan, replicas=wanted) if wanted else plan
