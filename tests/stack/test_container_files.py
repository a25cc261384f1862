"""The container side of the stack — Dockerfile, .dockerignore, docker-compose.yml — checked
without a Docker engine: by the compose specification's schema, a compose linter (dclint) and a
Dockerfile linter (hadolint), by reading the files for the rules the stack promises (pinned
versions in .env, a healthcheck on every service, a memory budget), and by running the
healthcheck commands compose would run against the real programs on loopback.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.memory import POOL_SIZE, POSTGRES_SETTINGS
from bench.memory import REPLICAS as MEASURED_REPLICAS
from devkit.dev_credentials import write_dev_credentials
from devkit.processes import ServerProcess
from loadtest.settings import DEV_SECRETS
from scripts.stack.observe import eventually
from tests.conftest import require_tool
from tests.stack.conftest import env_versions
from user_service.config import ServerSettings
from user_service.listening import free_port

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
COLLECTOR_DOCKERFILE = REPO / "otel-collector/Dockerfile"
VICTORIALOGS_DOCKERFILE = REPO / "victorialogs/Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_FILE = REPO / ".env"
VENV_BIN = Path(sys.executable).parent
LOCUST = (str(VENV_BIN / "python"), "-m", "loadtest")  # as the image runs it

# 1.5 GiB for traces and metrics; the log store (and the log pipeline in the service and the load
# generator) added 64 MiB.
MEMORY_BUDGET_MIB = 1600
# A limit is at least this many times the component's measured peak.
HEADROOM = 1.3
MEMORY_FIGURES = REPO / "bench/results/memory.json"
# The Collector's Go runtime and buffers beyond what its memory_limiter counts (the
# memory_limiter processor's documentation: "typically ... about 50MiB higher").
COLLECTOR_OVERHEAD_MIB = 50
# Python images of the Dockerfile and the user their final stages run as.
UNPRIVILEGED_USER = "10001:10001"


# --- reading the files --------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())  # merges the x- anchors like compose
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def mebibytes(size: str) -> int:
    """Compose's memory sizes ("128M", "1g") in MiB: its units are powers of 1024."""
    match = re.fullmatch(r"(\d+)([kmg])i?b?", size.lower())
    assert match, f"unexpected memory size {size!r}"
    number, unit = int(match.group(1)), match.group(2)
    return {"k": number // 1024, "m": number, "g": number * 1024}[unit]


def memory_limit_mib(service: dict[str, Any]) -> int:
    return mebibytes(str(service["deploy"]["resources"]["limits"]["memory"]))


def replicas(service: dict[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


@dataclass
class Stage:
    """One FROM of the Dockerfile, its instructions with continuation lines joined."""

    name: str
    base: str
    instructions: list[str] = field(default_factory=list)

    def copies_from(self) -> set[str]:
        return {m.group(1) for i in self.instructions for m in [re.match(r"COPY --from=(\S+)", i)] if m}


@cache
def dockerfile_instructions() -> tuple[str, ...]:
    logical = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = (line.strip() for line in logical.splitlines())
    return tuple(re.sub(r"\s+", " ", line) for line in lines if line and not line.startswith("#"))


@cache
def stages() -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for instruction in dockerfile_instructions():
        if match := re.fullmatch(r"FROM (\S+) AS (\S+)", instruction):
            current = found[match.group(2)] = Stage(match.group(2), match.group(1))
        elif instruction.startswith("FROM "):
            raise AssertionError(f"every stage is named, so compose can target it: {instruction}")
        elif current is not None:
            current.instructions.append(instruction)
    return found


def stage_chain(target: str) -> list[Stage]:
    """The stage and the stages it is built FROM, the target first."""
    chain = [stages()[target]]
    while chain[-1].base in stages():
        chain.append(stages()[chain[-1].base])
    return chain


def dockerfiles() -> list[Path]:
    """Every Dockerfile compose builds: the Python images', the Collector's and VictoriaLogs's."""
    return [DOCKERFILE, COLLECTOR_DOCKERFILE, VICTORIALOGS_DOCKERFILE]


def built_services() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in services().items() if "build" in service}


# --- the linters --------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    """docker-compose.yml validates against the Compose Specification's JSON schema (the copy
    check-jsonschema vendors): no misspelt key, no value of the wrong type."""
    result = subprocess.run(
        [str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_itself_resolves_the_file_with_the_versions_in_env() -> None:
    """Docker Compose's own loader (built from its Go module; `config` needs no engine) accepts
    the file, and after reading .env every image it pulls carries the version pinned there."""
    resolved = {name: service.get("image") for name, service in resolved_services().items()}
    versions = env_versions()
    assert resolved["grafana"] == f"grafana/grafana:{versions['GRAFANA_VERSION']}"
    assert resolved["jaeger"] == f"jaegertracing/jaeger:{versions['JAEGER_VERSION']}"
    assert resolved["prometheus"] == f"prom/prometheus:v{versions['PROMETHEUS_VERSION']}"
    assert resolved["postgres"] == f"postgres:{versions['POSTGRES_VERSION']}"


def test_compose_file_passes_the_compose_linter() -> None:
    """dclint (its own schema check, then its rules: explicit image tags, quoted ports bound to
    an interface, key order, ...) finds no error and no warning."""
    dclint = require_tool("dclint")
    result = subprocess.run(
        [dclint, "--no-color", "--max-warnings", "0", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda path: str(path.relative_to(REPO)))
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    """hadolint reports nothing at all (not even style notes, below its default threshold):
    the Dockerfile follows its best practices and the shell in its RUN lines passes ShellCheck."""
    result = subprocess.run(
        [str(VENV_BIN / "hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


# --- versions in one place ----------------------------------------------------------------------


def test_every_pulled_image_is_pinned_in_env() -> None:
    """Each `image:` is a name and a tag taken from a variable that .env defines: bumping a
    version is a one-line change in .env, and no image floats on `latest`."""
    pulled = {name: s["image"] for name, s in services().items() if "image" in s}
    assert pulled, "the stack pulls the observability images"
    for name, image in pulled.items():
        match = re.fullmatch(r"[a-z0-9./-]+:v?\$\{(\w+)\}", image)
        assert match, f"{name}: image {image!r} is not name:${{VARIABLE}}"
        assert match.group(1) in env_versions(), f"{name}: {match.group(1)} is not in .env"


def arguments_with_defaults(dockerfile: Path) -> dict[str, str]:
    """Every ``ARG NAME=default`` of a Dockerfile, global or per stage."""
    text = dockerfile.read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda path: str(path.relative_to(REPO)))
def test_dockerfile_defaults_are_the_versions_pinned_in_env(dockerfile: Path) -> None:
    """Each build argument of a Dockerfile has a default, and that default is the version .env
    pins under the same name: a plain `docker build` gets the pinned versions, and compose (which
    passes .env's values) builds exactly the same thing."""
    declared = set(re.findall(r"^ARG (\w+)", dockerfile.read_text(), re.MULTILINE))
    defaults = arguments_with_defaults(dockerfile)
    assert declared == set(defaults), f"arguments without a default: {sorted(declared - set(defaults))}"
    for argument, default in defaults.items():
        assert env_versions().get(argument) == default, (
            f"{dockerfile.name}: {argument}={default} is not .env's"
        )


def test_compose_passes_build_arguments_from_env() -> None:
    """Every build argument compose passes is the .env variable of the same name."""
    passed = 0
    for name, service in built_services().items():
        for argument, value in service["build"].get("args", {}).items():
            assert value == f"${{{argument}}}", f"{name}: {argument}={value} is not taken from .env"
            assert argument in env_versions(), f"{name}: {argument} is not in .env"
            passed += 1
    assert passed


def dockerfile_check(dockerfile: Path, target: str, args: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """BuildKit's own Dockerfile frontend (tools/dockerfile-check) on one build, offline."""
    command = [require_tool("dockerfile-check"), "-f", str(dockerfile), "-target", target]
    for key, value in args.items():
        command += ["-build-arg", f"{key}={value}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@cache
def resolved_services() -> dict[str, dict[str, Any]]:
    """The services as Docker Compose itself resolves them (.env read, anchors merged, short
    syntax expanded, paths made absolute): exactly what `docker compose` hands the engine."""
    result = subprocess.run(
        [require_tool("docker-compose"), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)["services"]
    assert isinstance(resolved, dict)
    return resolved


def resolved_builds() -> dict[str, dict[str, Any]]:
    """The `build:` section of each built service: what `docker compose build` hands BuildKit."""
    return {name: service["build"] for name, service in resolved_services().items() if "build" in service}


@pytest.mark.parametrize("service_name", sorted(built_services()))
def test_buildkit_converts_every_build_compose_runs(service_name: str) -> None:
    """BuildKit's Dockerfile frontend converts the service's build — its Dockerfile, target and
    the args compose resolves — without a refusal or a build-check warning. It expands the FROM
    line of every stage, reachable from the target or not, so an ARG used in any FROM needs a
    value in every build (before this check existed, every build compose ran failed so)."""
    build = resolved_builds()[service_name]
    dockerfile = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
    result = dockerfile_check(dockerfile, build["target"], build.get("args", {}))
    assert result.returncode == 0, result.stderr
    assert "converts" in result.stdout


def test_buildkit_check_refuses_an_unreachable_stage_without_its_base_image(tmp_path: Path) -> None:
    """The checker is BuildKit's real conversion, not a reading of the file: a stage the target
    never uses, whose FROM argument is not given, still fails the build (the defect compose had)."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ARG USED\nARG UNUSED\nFROM ${USED} AS wanted\nFROM ${UNUSED} AS other\n")
    refused = dockerfile_check(dockerfile, "wanted", {"USED": "busybox:1.37.0-musl"})
    assert refused.returncode != 0
    assert "base name (${UNUSED}) should not be blank" in refused.stderr
    accepted = dockerfile_check(dockerfile, "wanted", {"USED": "busybox:1.37.0-musl", "UNUSED": "alpine:3"})
    assert accepted.returncode != 0, "ARGs without a default: BuildKit's InvalidDefaultArgInFrom check"
    assert "InvalidDefaultArgInFrom" in accepted.stderr


def test_uv_in_the_image_is_the_version_of_the_makefile() -> None:
    """The image resolves uv.lock with the same uv release as `make setup`."""
    makefile = (REPO / "Makefile").read_text()
    match = re.search(r"^UV_VERSION\s*:?=\s*(\S+)$", makefile, re.MULTILINE)
    assert match is not None
    assert env_versions()["UV_VERSION"] == match.group(1)


# --- health and start order ---------------------------------------------------------------------


def test_every_service_has_an_exec_form_healthcheck() -> None:
    """Every service defines a healthcheck, in exec form (CMD): several images have no shell,
    and CMD-SHELL would fail there before the probe even runs."""
    for name, service in services().items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable", False)
        assert check["test"][0] == "CMD", f"{name}: {check['test']}"
        assert len(check["test"]) > 1


def test_every_dependency_waits_until_healthy() -> None:
    """depends_on always waits for the dependency's healthcheck, never just for its start."""
    dependencies = 0
    for name, service in services().items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: the short form of depends_on waits for nothing"
        for dependency, condition in depends_on.items():
            assert dependency in services()
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}: {condition}"
            dependencies += 1
    assert dependencies


def test_user_service_healthcheck_asks_the_grpc_health_protocol() -> None:
    """The service's healthcheck is grpc-health-probe against the port it serves, and the image
    has the probe on its PATH (built in the Dockerfile's Go stage)."""
    test = services()["user-service"]["healthcheck"]["test"]
    assert test[1] == "grpc-health-probe"
    published = [str(port).rsplit(":", 1)[1] for port in services()["user-service"]["ports"]]
    assert "-addr=127.0.0.1:50051" in test
    assert "50051" in published
    final = stages()["user-service"]
    assert "COPY --from=health-probe /out/grpc-health-probe /usr/local/bin/grpc-health-probe" in (
        final.instructions
    )


def test_user_service_healthcheck_command_reports_serving_and_down(database_url: str) -> None:
    """Compose's exact healthcheck command (only the address moved to a free port) exits 0
    against a running server and non-zero once the server is gone."""
    probe = require_tool("grpc-health-probe")
    test = services()["user-service"]["healthcheck"]["test"]
    server = ServerProcess(database_url, env={"OTEL_SDK_DISABLED": "true"}).start()
    command = [probe, *(f"-addr={server.target}" if a.startswith("-addr=") else a for a in test[2:])]
    try:
        serving = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    finally:
        server.stop()
    down = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert serving.returncode == 0, serving.stdout + serving.stderr
    assert "SERVING" in serving.stdout + serving.stderr
    assert down.returncode != 0


def start_locust(*args: str) -> subprocess.Popen[bytes]:
    """A quiet Locust process of the repository's locustfile (no telemetry)."""
    return subprocess.Popen(
        [*LOCUST, "-f", "loadtest/locustfile.py", *args],
        cwd=REPO,
        env={**os.environ, "OTEL_SDK_DISABLED": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def locust_master() -> Iterator[tuple[int, int]]:
    """A Locust master on free loopback ports: (web UI port, worker port)."""
    web_port, worker_port = free_port(), free_port()
    master = start_locust(
        "--master",
        *("--web-host", "127.0.0.1", "--web-port", str(web_port)),
        *("--master-bind-host", "127.0.0.1", "--master-bind-port", str(worker_port)),
    )
    try:
        yield web_port, worker_port
    finally:
        master.terminate()
        master.wait(timeout=30)


def run_check(test: list[str], *replacements: tuple[str, str]) -> int:
    """Runs a compose healthcheck's command with this test's Python and ports."""
    assert test[:2] == ["CMD", "python"]
    command = [sys.executable, *test[2:]]
    for old, new in replacements:
        command = [part.replace(old, new) for part in command]
    return subprocess.run(command, capture_output=True, timeout=30, check=False).returncode


def test_every_locust_the_stack_runs_starts_through_python_m_loadtest() -> None:
    """Plain `locust` patches threads, where grpc.aio cannot run (and the locustfile refuses to
    start): the image's default command and both compose services go through `python -m
    loadtest`, the command the healthcheck test below runs."""
    [cmd] = [i for i in stages()["load-generator"].instructions if i.startswith("CMD ")]
    assert json.loads(cmd.removeprefix("CMD "))[:3] == ["python", "-m", "loadtest"]
    master = " ".join(services()["locust"]["command"])
    assert "exec python -m loadtest -f loadtest/locustfile.py --master" in master
    assert services()["locust-worker"]["command"][:3] == ["python", "-m", "loadtest"]


def test_load_generator_healthchecks_see_the_web_ui_and_the_master_connection(
    locust_master: tuple[int, int],
) -> None:
    """The master's check passes once its web UI answers; a worker's check fails until the
    worker holds a connection to the master's port, and passes from then on."""
    web_port, worker_port = locust_master
    master_test = services()["locust"]["healthcheck"]["test"]
    worker_test = services()["locust-worker"]["healthcheck"]["test"]
    assert "http://127.0.0.1:8089/" in master_test[-1]
    assert f":{5557:04X}'" in worker_test[-1], "the worker's check looks for Locust's worker port"
    this_master = (f":{5557:04X}'", f":{worker_port:04X}'")

    assert eventually(lambda: run_check(master_test, (":8089/", f":{web_port}/")) == 0, timeout=30)
    assert run_check(worker_test, this_master) != 0, "no worker yet"
    worker = start_locust("--worker", "--master-host", "127.0.0.1", "--master-port", str(worker_port))
    try:
        assert eventually(lambda: run_check(worker_test, this_master) == 0, timeout=30), (
            "worker never connected"
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)


# --- memory -------------------------------------------------------------------------------------


@cache
def memory_figures() -> dict[str, Any]:
    """What `make bench-memory` measured (and the figures it takes from documentation)."""
    figures = json.loads(MEMORY_FIGURES.read_text())
    assert isinstance(figures, dict)
    return figures


@dataclass(frozen=True)
class BudgetRow:
    service: str
    limit_mib: int
    peak_mib: float | None  # measured; None where the limit rests on a documented figure


@cache
def readme_memory_table() -> dict[str, BudgetRow]:
    """The README's memory table: `| service | limit | measured peak | ... |`, one row a service."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("<!-- memory-table -->") : text.index("<!-- /memory-table -->")]
    rows: dict[str, BudgetRow] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([a-z-]+)`(?: x\d+)?", cells[0])
        if not match:
            continue
        limit = re.fullmatch(r"(\d+)M(?: each)?", cells[1])
        assert limit, f"README memory table: limit {cells[1]!r}"
        peak = re.fullmatch(r"([\d.]+) MiB", cells[2])
        rows[match.group(1)] = BudgetRow(
            match.group(1), int(limit.group(1)), float(peak.group(1)) if peak else None
        )
    return rows


def test_every_service_has_a_memory_limit_and_the_stack_fits_the_budget() -> None:
    """Every service is limited, and the limits (times replicas) add up to at most 1,600 MiB:
    Grafana and the Locust master and worker included."""
    total = sum(memory_limit_mib(s) * replicas(s) for s in services().values())
    assert total <= MEMORY_BUDGET_MIB, f"{total} MiB"


@pytest.mark.parametrize("name", sorted(services()))
def test_every_limit_is_at_least_1_3_times_its_peak(name: str) -> None:
    """A service's limit is at least 1.3x the peak `make bench-memory` measured for it; where no
    peak can be measured here (Grafana), at least the documented figure and 1.3x the reported one."""
    limit = memory_limit_mib(services()[name])
    measured = memory_figures()["peak_mib"]
    if name in measured:
        assert limit >= HEADROOM * measured[name], f"{name}: {limit}M < {HEADROOM} x {measured[name]} MiB"
    else:
        sourced = memory_figures()["sourced"][name]
        assert limit >= sourced["documented_mib"], f"{name}: below its documented figure"
        assert limit >= HEADROOM * sourced["reported_peak_mib"], f"{name}: {limit}M < 1.3x the reported peak"
        assert sourced["source"]


def test_readme_memory_table_is_compose_and_the_measured_figures() -> None:
    """The README's table shows each service's real limit and the peak the figures file holds,
    with a row per service and no other."""
    table = readme_memory_table()
    assert set(table) == set(services())
    for name, row in table.items():
        assert row.limit_mib == memory_limit_mib(services()[name]), name
        assert row.peak_mib == memory_figures()["peak_mib"].get(name), name
    total = sum(memory_limit_mib(s) * replicas(s) for s in services().values())
    assert f"| **{total}M** |" in (REPO / "README.md").read_text()


def test_go_programs_are_told_80_percent_of_their_limit() -> None:
    """Go programs get GOMEMLIMIT at ~80 % of the container's limit (Prometheus through its own
    --auto-gomemlimit.ratio), so their garbage collector works harder before the kernel's OOM
    killer would step in."""
    go_services = {"grafana", "jaeger", "otel-collector", "victorialogs"}
    for name in go_services:
        service = services()[name]
        ratio = mebibytes(str(service["environment"]["GOMEMLIMIT"])) / memory_limit_mib(service)
        assert 0.75 <= ratio <= 0.85, f"{name}: GOMEMLIMIT is {ratio:.0%} of its limit"
    assert "--auto-gomemlimit.ratio=0.8" in services()["prometheus"]["command"]


def test_collector_limit_leaves_room_above_its_memory_limiter() -> None:
    """The Collector's memory_limiter refuses data before the container's limit is reached: its
    limit_mib plus the runtime's overhead fits in the container, and the config's comment names
    the container's real limit."""
    text = (REPO / "otel-collector/config.yaml").read_text()
    limit_mib = int(yaml.safe_load(text)["processors"]["memory_limiter"]["limit_mib"])
    container = memory_limit_mib(services()["otel-collector"])
    assert limit_mib + COLLECTOR_OVERHEAD_MIB <= container
    assert f"{container} MiB" in text


def test_memory_bench_runs_postgres_as_compose_does() -> None:
    """The measured PostgreSQL has compose's shared_buffers and max_connections, and the replicas
    its pool size, so its figure is the one compose's limit needs."""
    command = services()["postgres"]["command"]
    for setting in POSTGRES_SETTINGS:
        assert setting in command, setting
    assert services()["user-service"]["environment"]["USER_SERVICE_DATABASE_POOL_SIZE"] == POOL_SIZE
    assert replicas(services()["user-service"]) == MEASURED_REPLICAS


def test_services_restart_unless_stopped() -> None:
    """An OOM-killed or crashed container comes back (and `up --wait` does not wait forever on it)."""
    for name, service in services().items():
        assert service.get("restart") == "unless-stopped", name


# --- what the containers get --------------------------------------------------------------------


# Grafana 12's default preinstalled plugins (pkg/setting/setting_plugins.go,
# defaultPreinstallPlugins; grafana-advisor-app with its feature toggle).
GRAFANA_DEFAULT_PREINSTALLS = {
    "grafana-lokiexplore-app",
    "grafana-pyroscope-app",
    "grafana-exploretraces-app",
    "grafana-metricsdrilldown-app",
    "grafana-advisor-app",
}


def test_grafana_downloads_one_pinned_plugin_and_lets_anonymous_viewers_in() -> None:
    """Grafana installs one plugin at start, before it serves (the VictoriaLogs datasource, at
    the version .env pins), and none of its default preinstalls; it checks for no update,
    reports nothing; anonymous visitors get the read-only Viewer role."""
    environment = resolved_services()["grafana"]["environment"]
    assert not any(key.startswith("GF_INSTALL_PLUGINS") for key in environment)
    assert "GF_PLUGINS_PREINSTALL" not in environment
    assert "GF_PLUGINS_PREINSTALL_DISABLED" not in environment, "it would switch off the sync install too"
    version = env_versions()["VICTORIALOGS_DATASOURCE_VERSION"]
    assert environment["GF_PLUGINS_PREINSTALL_SYNC"] == f"victoriametrics-logs-datasource@{version}"
    assert set(environment["GF_PLUGINS_DISABLE_PLUGINS"].split(",")) == GRAFANA_DEFAULT_PREINSTALLS
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    for key in (
        "GF_ANALYTICS_REPORTING_ENABLED",
        "GF_ANALYTICS_CHECK_FOR_UPDATES",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES",
        "GF_NEWS_NEWS_FEED_ENABLED",
    ):
        assert environment[key] == "false", key
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_mounted_configuration_is_in_the_repository_read_only_and_selinux_labelled() -> None:
    """Every bind mount is a file or folder of this repository, mounted read-only and with the
    shared SELinux label (`z`: readable by the containers on Fedora/RHEL hosts), as Compose itself
    resolves the short syntax; named volumes are declared."""
    mounts = 0
    for name, service in resolved_services().items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).is_relative_to(REPO), f"{name}: {volume['source']}"
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']} does not exist"
                assert volume.get("read_only") is True, f"{name}: {volume['source']} is writable"
                assert volume["bind"].get("selinux") == "z", f"{name}: {volume['source']} is not relabelled"
                mounts += 1
            else:
                assert volume["source"] in compose()["volumes"], (
                    f"{name}: volume {volume['source']} is not declared"
                )
            assert volume["target"].startswith("/")
    assert mounts >= 5  # collector, jaeger, prometheus, grafana provisioning and dashboards


def test_secrets_are_the_files_make_credentials_writes(tmp_path: Path) -> None:
    """The compose secrets are the development credentials as devkit.dev_credentials writes
    them, in .dev/credentials, which git and the build context both leave out."""
    written = write_dev_credentials(tmp_path)
    names = {
        written.jwt_secret_file.name,
        written.clients_file.name,
        "client-secrets.json",
        "postgres.password",
        "database.url",
    }
    assert {path.name for path in tmp_path.iterdir()} == names
    for secret in compose()["secrets"].values():
        path = Path(secret["file"])
        assert path.parent == Path(".dev/credentials")
        assert path.name in names
    assert ".dev/" in (REPO / ".gitignore").read_text().splitlines()
    assert excluded_from_build_context(".dev/credentials/jwt.secret")


def test_services_find_their_secrets_where_they_look() -> None:
    """The server is pointed at the files compose mounts, and the load generator's client secrets
    land where loadtest/settings.py looks, relative to the image's working directory."""
    server = services()["user-service"]
    assert server["environment"]["USER_SERVICE_JWT_SECRET_FILE"] == "/run/secrets/jwt_secret"
    assert server["environment"]["USER_SERVICE_AUTH_CLIENTS_FILE"] == "/run/secrets/auth_clients"
    assert server["environment"]["USER_SERVICE_DATABASE_URL_FILE"] == "/run/secrets/database_url"
    assert {"jwt_secret", "auth_clients", "database_url"} == set(server["secrets"])
    postgres = services()["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert postgres["secrets"] == ["postgres_password"]
    runtime = stage_chain("load-generator")[-1]
    workdir = next(i.split()[1] for i in runtime.instructions if i.startswith("WORKDIR "))
    for name in ("locust", "locust-worker"):
        [mount] = services()[name]["secrets"]
        assert mount["target"] == str(Path(workdir) / DEV_SECRETS)


# --- the images ---------------------------------------------------------------------------------


def test_python_images_run_unprivileged_without_build_tools() -> None:
    """The service and load-generator images run as uid 10001 and take only the finished
    virtualenv (and the health probe) from the build stages: no uv, no grpcio-tools, no source."""
    for target in ("user-service", "load-generator"):
        chain = stage_chain(target)
        instructions = [i for stage in reversed(chain) for i in stage.instructions]
        users = [i.split()[1] for i in instructions if i.startswith("USER ")]
        assert users, f"{target} runs as root"
        assert users[-1] == UNPRIVILEGED_USER, f"{target} runs as {users[-1]}"
        copied = {source for stage in chain for source in stage.copies_from()}
        assert copied <= {"build", "build-load", "health-probe"}, f"{target} copies from {copied}"
    assert not any(re.fullmatch(r"USER (root|0)(:.*)?", i) for i in dockerfile_instructions())


def test_the_default_build_target_is_the_service() -> None:
    """A plain `docker build .` builds the last stage: the service, not a helper image."""
    assert list(stages())[-1] == "user-service"


def excluded_from_build_context(path: str) -> bool:
    """Whether .dockerignore leaves a path out of the build context: its patterns in order, the
    last one matching the path or a folder above it deciding (Docker's rules, for the pattern
    forms this file uses)."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
            excluded = not negated
    return excluded


def test_build_context_holds_what_the_dockerfile_copies_and_no_secret() -> None:
    """Every file under the Dockerfile's COPY sources reaches the builder (generated code and
    bytecode aside), while credentials, the virtualenv, git and local state stay out."""
    sources = [
        source
        for line in dockerfile_instructions()
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    ]
    assert sources
    for source in sources:
        files = (
            [source]
            if (REPO / source).is_file()
            else sorted(str(path.relative_to(REPO)) for path in (REPO / source).rglob("*") if path.is_file())
        )
        for file in files:
            generated = "/gen/" in file or "__pycache__" in file
            assert excluded_from_build_context(file) == generated, file
    for private in (
        ".dev/credentials/jwt.secret",
        ".venv/bin/python",
        ".git/HEAD",
        ".stack/run/x",
        "reports/x",
    ):
        assert excluded_from_build_context(private), private


# --- replicas on PostgreSQL ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "variable"),
    [
        ("user-service", "USER_SERVICE_FLAGS_FILE"),
        ("locust", "LOAD_FLAGS_FILE"),
        ("locust-worker", "LOAD_FLAGS_FILE"),
    ],
)
def test_the_fault_flags_the_repository_holds_reach_every_reader(service: str, variable: str) -> None:
    """The flag file `make fault` edits reaches every replica and the load generator's processes:
    its folder is mounted (a single-file mount would keep the old file after the atomic rename)
    and they are pointed at it."""
    resolved = resolved_services()[service]
    (mount,) = [v for v in resolved["volumes"] if v["source"] == str(REPO / "flags")]
    flags_file = Path(resolved["environment"][variable])
    assert flags_file.parent == Path(mount["target"])
    assert (REPO / "flags" / flags_file.name).is_file()


def test_the_service_runs_replicas_on_the_compose_database(tmp_path: Path) -> None:
    """Two or more replicas, each reaching the postgres service with the user, database and
    password the postgres container is created with (the URL make credentials writes)."""
    server, postgres = services()["user-service"], services()["postgres"]
    assert replicas(server) >= 2
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    write_dev_credentials(tmp_path)
    url = urllib.parse.urlsplit((tmp_path / "database.url").read_text())
    assert (url.scheme, url.hostname, url.port) == ("postgresql", "postgres", 5432)
    assert url.username == postgres["environment"]["POSTGRES_USER"]
    assert url.path == "/" + postgres["environment"]["POSTGRES_DB"]
    assert url.password == (tmp_path / "postgres.password").read_text()
    assert ServerSettings(database_url_file=tmp_path / "database.url", auth_enabled=False).database_kind == (
        "postgresql"
    )


def test_every_replica_is_published_scraped_and_balanced_over() -> None:
    server = services()["user-service"]
    count = replicas(server)
    for port in server["ports"]:
        first, last = (int(p) for p in str(port).split(":")[1].split("-"))
        assert last - first + 1 == count, f"one host port per replica: {port}"
    (group,) = yaml.safe_load((REPO / "prometheus/targets/user-service.yml").read_text())
    assert group["targets"] == [f"{compose()['name']}-user-service-{i}:9464" for i in range(1, count + 1)]
    target = compose()["x-load-generator-environment"]["USER_SERVICE_TARGET"]
    assert target == "dns:///user-service:50051", "every replica's address, balanced round-robin"
