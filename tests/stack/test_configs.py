"""The stack's configuration, checked by the tools of the pinned versions themselves — no
stack needed: promtool (config, rules, rule unit tests), the built Collector's and Jaeger's
``validate``, the builds' module versions against .env, the dashboards against their generator
and the provisioned datasources."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.stack.plan import REPO
from tests.conftest import require_tool
from tests.stack.conftest import env_versions


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def test_prometheus_config_is_valid() -> None:
    """promtool accepts prometheus.yml and the rule files it loads."""
    result = run(require_tool("promtool"), "check", "config", "prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# Discoveries Prometheus keeps when built with its remove_all_sd tag (plugins/minimum.go), as
# scripts/install-tools.sh builds it; static_configs needs no discovery at all.
KEPT_DISCOVERIES = {"file_sd_configs", "http_sd_configs"}


def test_prometheus_config_uses_only_discoveries_the_native_build_keeps() -> None:
    """Every scrape job finds its targets by file (or HTTP, or statically): the native Prometheus
    is built without the cloud and orchestrator discoveries, and would refuse anything else."""
    config = yaml.safe_load((REPO / "prometheus/prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        discoveries = {key for key in job if key.endswith("_sd_configs")}
        assert discoveries <= KEPT_DISCOVERIES, f"{job['job_name']}: {sorted(discoveries - KEPT_DISCOVERIES)}"


def test_the_native_build_really_leaves_the_other_discoveries_out(tmp_path: Path) -> None:
    """The stack's Prometheus refuses a configuration with Kubernetes discovery at start (the
    official image, built with every discovery, would accept it): the check above guards a real
    difference between the builds, and prometheus.yml stays runnable by both."""
    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs:\n  - job_name: k8s\n    kubernetes_sd_configs:\n      - role: pod\n")
    result = run(
        require_tool("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        "--web.listen-address=127.0.0.1:0",
    )
    assert result.returncode != 0
    assert "field kubernetes_sd_configs not found" in result.stderr


def test_rules_are_valid() -> None:
    result = run(
        require_tool("promtool"),
        "check",
        "rules",
        *sorted(map(str, (REPO / "prometheus/rules").glob("*.yml"))),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_pass() -> None:
    """Each alert fires on its input and stays silent on healthy input (tests/alerts.test.yml)."""
    result = run(require_tool("promtool"), "test", "rules", "prometheus/tests/alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in sorted((REPO / "prometheus/rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


RUNBOOK_SECTIONS = (
    "## What it means",
    "## Where to look",
    "## From the exemplar to the trace",
    "## Likely causes",
    "## Confirm",
    "## Stop it",
)
# Alerts a fault on purpose (flags/demo.flagd.json) can set off: their runbooks name the flag.
FAULT_FLAGS_BEHIND = {
    "UserServiceErrorBudgetBurn": "userServiceErrors",
    "UserServiceErrorBudgetBurnSlow": "userServiceErrors",
    "UserServiceLatencyBudgetBurn": "userServiceLatency",
    "UserServiceLatencyBudgetBurnSlow": "userServiceLatency",
    "UserServiceSubscribersCutOff": "loadGeneratorSlowConsumers",
    "UserServiceFeedStalled": "userServiceFeedStall",
    "UserServiceDeliveryLagging": "loadGeneratorSlowConsumers",
    "UserServiceStoreSlow": "userServiceSlowDatabase",
    "UserServiceStoreConnectionWait": "userServicePoolStarvation",
    "UserServiceMemoryGrowth": "userServiceMemoryLeak",
    "UserServiceCpuSaturated": "userServiceCpuHog",
    "UserServiceReplicaOutOfRotation": "userServiceNotReady",
}


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_says_what_happened_and_links_its_runbook(rule: dict[str, Any]) -> None:
    """summary and description for the notification, and a runbook in docs/runbooks with every
    step an operator takes: what it means, the panel, exemplar to trace, causes, confirm, stop."""
    annotations = rule["annotations"]
    assert annotations["summary"]
    assert annotations["description"]
    runbook = REPO / annotations["runbook_url"]
    assert runbook == REPO / "docs/runbooks" / f"{rule['alert']}.md"
    text = runbook.read_text()
    assert text.startswith(f"# {rule['alert']}\n")
    for section in RUNBOOK_SECTIONS:
        assert section in text, f"{runbook.name} lacks {section!r}"
    flag = FAULT_FLAGS_BEHIND.get(rule["alert"])
    assert flag is None or flag in text, f"{runbook.name} does not name the fault flag {flag}"


def test_runbooks_name_only_panels_that_exist() -> None:
    """Every panel a runbook sends the operator to (in bold) is a panel of the dashboards."""
    panels = {
        m.group(1) for m in re.finditer(r"^\| ([^|]+?) \|", (REPO / "grafana/PANELS.md").read_text(), re.M)
    }
    for runbook in sorted((REPO / "docs/runbooks").glob("*.md")):
        named = {" ".join(bold.split()) for bold in re.findall(r"\*\*([^*]+)\*\*", runbook.read_text())}
        missing = named - {"Severity:", "Fires when"} - panels
        assert not missing, f"{runbook.name} names panels that do not exist: {missing}"


def test_every_alert_has_a_firing_and_a_silent_test() -> None:
    alerts = {rule["alert"] for rule in alert_rules()}
    cases = [
        case
        for test in yaml.safe_load((REPO / "prometheus/tests/alerts.test.yml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts == firing, f"alerts without a firing test: {alerts - firing}"
    assert alerts == silent, f"alerts without a must-not-fire test: {alerts - silent}"


def test_collector_config_is_valid_for_the_built_collector() -> None:
    result = run(require_tool("otelcol-user-service"), "validate", "--config", "otel-collector/config.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_collector_is_built_from_exactly_the_components_its_config_uses() -> None:
    """The builder manifest lists what the config uses — no more (build time, size), no less."""
    result = run(require_tool("otelcol-user-service"), "components")
    built = yaml.safe_load(result.stdout)
    config = yaml.safe_load((REPO / "otel-collector/config.yaml").read_text())
    for kind in ("receivers", "processors", "exporters", "connectors", "extensions"):
        used = {name.split("/")[0] for name in config.get(kind, {})}
        available = {component["name"] for component in built.get(kind) or []}
        assert used == available, f"{kind}: config uses {used}, the build has {available}"


def test_jaeger_config_is_valid() -> None:
    result = run(require_tool("jaeger"), "validate", "--config", "jaeger/config.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def module_versions(binary: str) -> dict[str, str]:
    """The Go module versions compiled into a binary (its build info)."""
    output = run("go", "version", "-m", binary).stdout
    return {
        parts[1]: parts[2]
        for parts in (line.split() for line in output.splitlines())
        if parts[0] in ("mod", "dep")
    }


def test_native_builds_are_the_versions_in_env() -> None:
    """The binaries the native stack runs were built from exactly the versions .env pins (the
    ones docker-compose.yml's image tags use)."""
    versions = env_versions()
    jaeger = module_versions(require_tool("jaeger"))
    assert jaeger["github.com/jaegertracing/jaeger"] == versions["JAEGER_MODULE_VERSION"]
    for tool in ("prometheus", "promtool"):
        built = module_versions(require_tool(tool))
        assert built["github.com/prometheus/prometheus"] == versions["PROMETHEUS_MODULE_VERSION"]
    build_settings = run("go", "version", "-m", require_tool("prometheus")).stdout.split()
    assert "-tags=remove_all_sd" in build_settings, "not the minimal-discovery build of Prometheus"
    # Prometheus 3.x is module v0.3xx: 3.16.0 <-> v0.316.0.
    major, minor, patch = versions["PROMETHEUS_VERSION"].split(".")
    assert versions["PROMETHEUS_MODULE_VERSION"] == f"v0.{int(major) * 100 + int(minor)}.{patch}"
    collector = module_versions(require_tool("otelcol-user-service"))
    assert (
        collector["go.opentelemetry.io/collector/receiver/otlpreceiver"] == f"v{versions['OTELCOL_VERSION']}"
    )
    contrib = "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusexporter"
    assert collector[contrib] == f"v{versions['OTELCOL_CONTRIB_VERSION']}"
    victorialogs = module_versions(require_tool("victoria-logs"))
    assert victorialogs["github.com/VictoriaMetrics/VictoriaLogs"] == versions["VICTORIALOGS_VERSION"]


def test_builder_manifest_pins_the_versions_in_env() -> None:
    versions = env_versions()
    manifest = (REPO / "otel-collector/builder-config.yaml").read_text()
    pinned = re.findall(r"gomod: (\S+) (v\S+)", manifest)
    assert pinned
    for module, version in pinned:
        expected = versions["OTELCOL_CONTRIB_VERSION" if "collector-contrib" in module else "OTELCOL_VERSION"]
        assert version == f"v{expected}", module


def test_dashboards_are_what_their_generator_writes() -> None:
    """The committed JSON (and PANELS.md) is exactly what scripts/dashboards.py generates."""
    result = run(sys.executable, "-m", "scripts.dashboards", "--check")
    assert result.returncode == 0, result.stderr


def datasource_uids(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["datasource"]["uid"]} if isinstance(node.get("datasource"), dict) else set()
        return found.union(*(datasource_uids(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(datasource_uids(item) for item in node))
    return set()


@pytest.mark.parametrize(
    "dashboard", sorted((REPO / "grafana/dashboards").glob("*.json")), ids=lambda p: p.stem
)
def test_dashboard_datasources_are_provisioned(dashboard: Path) -> None:
    provisioned = yaml.safe_load((REPO / "grafana/provisioning/datasources/datasources.yml").read_text())
    uids = {source["uid"] for source in provisioned["datasources"]}
    board = json.loads(dashboard.read_text())
    used = datasource_uids(board)
    assert used, "no panel names a datasource"
    assert used <= uids
    # Grafana 12's dashboard model (the Foundation SDK's target); Grafana migrates older ones.
    assert board["schemaVersion"] == 41


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    provisioned = yaml.safe_load((REPO / "grafana/provisioning/datasources/datasources.yml").read_text())
    return {source["uid"]: source for source in provisioned["datasources"]}


def test_exemplar_links_go_to_the_jaeger_datasource() -> None:
    by_uid = provisioned_datasources()
    (link,) = by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert link == {"name": "trace_id", "datasourceUid": "jaeger"}
    assert by_uid["jaeger"]["type"] == "jaeger"


def test_traces_and_logs_link_both_ways() -> None:
    """A trace in Jaeger leads to its log lines (the LogsQL filter on its trace id, with the
    variable escaped from provisioning's environment expansion), and a log line's trace_id field
    leads to the trace in Jaeger."""
    by_uid = provisioned_datasources()
    logs = by_uid["victorialogs"]
    assert logs["type"] == "victoriametrics-logs-datasource"
    assert logs["url"] == "http://victorialogs:9428"
    to_logs = by_uid["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert (to_logs["datasourceUid"], to_logs["customQuery"]) == ("victorialogs", True)
    assert to_logs["query"] == 'trace_id:="$${__trace.traceId}"'
    (to_trace,) = logs["jsonData"]["derivedFields"]
    assert (to_trace["matcherType"], to_trace["matcherRegex"]) == ("label", "trace_id")
    assert (to_trace["datasourceUid"], to_trace["url"]) == ("jaeger", "$${__value.raw}")
