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

from loadtest.settings import DEV_SECRETS
from scripts.dev_credentials import write_dev_credentials
from scripts.stack.observe import eventually
from tests.conftest import require_tool
from tests.stack.conftest import env_versions
from tests.support.processes import ServerProcess, free_port
from user_service.config import ServerSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_FILE = REPO / ".env"
VENV_BIN = Path(sys.executable).parent
LOCUST = str(VENV_BIN / "locust")

MEMORY_BUDGET_MIB = 1024
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

    def arguments(self) -> set[str]:
        used = set(re.findall(r"\$\{(\w+)\}", self.base))
        declared = {i.split()[1].split("=")[0] for i in self.instructions if i.startswith("ARG ")}
        return used | declared


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


def global_arguments() -> list[str]:
    """The ARGs before the first FROM: the only ones a FROM line may use."""
    first_from = next(i for i, line in enumerate(dockerfile_instructions()) if line.startswith("FROM "))
    return [line.split()[1] for line in dockerfile_instructions()[:first_from] if line.startswith("ARG ")]


def stage_chain(target: str) -> list[Stage]:
    """The stage and the stages it is built FROM, the target first."""
    chain = [stages()[target]]
    while chain[-1].base in stages():
        chain.append(stages()[chain[-1].base])
    return chain


def stages_needed(target: str) -> set[str]:
    """Every stage a target's build runs: its FROM chain and what it copies from, transitively."""
    needed: set[str] = set()
    pending = [target]
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        stage = stages()[name]
        pending.extend(other for other in {stage.base, *stage.copies_from()} if other in stages())
    return needed


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
    result = subprocess.run(
        [require_tool("docker-compose"), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    resolved = {name: service.get("image") for name, service in json.loads(result.stdout)["services"].items()}
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


def test_dockerfile_passes_hadolint() -> None:
    """hadolint reports nothing at all (not even style notes, below its default threshold):
    the Dockerfile follows its best practices and the shell in its RUN lines passes ShellCheck."""
    result = subprocess.run(
        [str(VENV_BIN / "hadolint"), "--no-color", str(DOCKERFILE)],
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


def test_every_base_image_is_a_build_argument_from_env() -> None:
    """Every FROM of the Dockerfile is one of its own stages or an image whose name or tag is a
    build argument without a default, and compose passes each such argument from .env."""
    arguments = global_arguments()
    assert arguments, "the base images are build arguments"
    for line in dockerfile_instructions():
        if line.startswith("ARG ") and line.split()[1] in arguments:
            assert "=" not in line, f"{line}: a default would be a second place for the version"
    for stage in stages().values():
        if stage.base in stages():
            continue
        assert re.fullmatch(r"([a-z0-9./-]+:)?\$\{\w+\}", stage.base), f"{stage.name}: FROM {stage.base}"
        assert set(re.findall(r"\$\{(\w+)\}", stage.base)) <= set(arguments)
    passed: dict[str, str] = {}
    for service in built_services().values():
        passed.update(service["build"].get("args", {}))
    for argument, value in passed.items():
        assert value == f"${{{argument}}}", f"build argument {argument}={value} is not taken from .env"
        assert argument in env_versions(), f"{argument} is not in .env"


@pytest.mark.parametrize("service_name", sorted(built_services()))
def test_compose_passes_every_build_argument_its_target_needs(service_name: str) -> None:
    """A built service's target, with every stage it builds from or copies from, uses only build
    arguments compose passes: none reaches a FROM line empty."""
    build = built_services()[service_name]["build"]
    assert build["target"] in stages()
    needed: set[str] = set()
    for name in stages_needed(build["target"]):
        needed |= stages()[name].arguments()
    missing = needed - set(build.get("args", {}))
    assert not missing, f"{service_name} builds {build['target']} without {sorted(missing)}"


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
        [LOCUST, "-f", "loadtest/locustfile.py", *args],
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


def test_every_service_has_a_memory_limit_and_the_stack_fits_the_budget() -> None:
    """Every service is limited, and the limits (times replicas) add up to at most 1 GiB:
    Grafana and the Locust master and workers included."""
    total = sum(memory_limit_mib(s) * replicas(s) for s in services().values())
    assert total <= MEMORY_BUDGET_MIB, f"{total} MiB"


def test_budget_table_in_the_compose_file_is_the_limits() -> None:
    """The budget table heading docker-compose.yml states the limits the services really have."""
    row = re.compile(r"^#   ([a-z-]+)(?: \([a-z]+\))?(?: \u00d7\d+)?\s+(\d+)M\b", re.MULTILINE)
    rows = row.findall(COMPOSE_FILE.read_text())
    table = {name: int(mib) for name, mib in rows}
    actual = {name: memory_limit_mib(s) * replicas(s) for name, s in services().items()}
    assert table.pop("total") == sum(actual.values())
    assert table == actual


def test_collector_limit_leaves_room_above_its_memory_limiter() -> None:
    """The Collector's memory_limiter refuses data before the container's limit is reached: its
    limit_mib plus the runtime's overhead fits in the container."""
    config = yaml.safe_load((REPO / "otel-collector/config.yaml").read_text())
    limit_mib = int(config["processors"]["memory_limiter"]["limit_mib"])
    assert limit_mib + COLLECTOR_OVERHEAD_MIB <= memory_limit_mib(services()["otel-collector"])


def test_go_programs_are_told_a_memory_limit_below_the_containers() -> None:
    """Where GOMEMLIMIT is set, it is below the container's limit, so the Go garbage collector
    works harder before the kernel would kill the process."""
    told = {name: s for name, s in services().items() if "GOMEMLIMIT" in s.get("environment", {})}
    assert told
    for name, service in told.items():
        go_limit = mebibytes(str(service["environment"]["GOMEMLIMIT"]))
        assert go_limit < memory_limit_mib(service), name


# --- what the containers get --------------------------------------------------------------------


def test_grafana_downloads_nothing_and_lets_anonymous_viewers_in() -> None:
    """Grafana installs no plugin at start (none listed, Grafana 12's preinstall off), checks for
    no update, reports nothing; anonymous visitors get the read-only Viewer role."""
    environment = services()["grafana"]["environment"]
    assert not any(key.startswith("GF_INSTALL_PLUGINS") for key in environment)
    assert "GF_PLUGINS_PREINSTALL" not in environment
    assert "GF_PLUGINS_PREINSTALL_SYNC" not in environment
    for key in ("GF_PLUGINS_PREINSTALL_DISABLED", "GF_AUTH_ANONYMOUS_ENABLED"):
        assert environment[key] == "true", key
    for key in (
        "GF_ANALYTICS_REPORTING_ENABLED",
        "GF_ANALYTICS_CHECK_FOR_UPDATES",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES",
        "GF_NEWS_NEWS_FEED_ENABLED",
    ):
        assert environment[key] == "false", key
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_mounted_configuration_is_in_the_repository_and_read_only() -> None:
    """Every bind mount is a file or folder of this repository, mounted read-only; named volumes
    are declared."""
    mounts = 0
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source, target, *options = str(volume).split(":")
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
                assert options == ["ro"], f"{name}: {source} is writable"
                mounts += 1
            else:
                assert source in compose()["volumes"], f"{name}: volume {source} is not declared"
            assert target.startswith("/")
    assert mounts >= 5  # collector, jaeger, prometheus, grafana provisioning and dashboards


def test_secrets_are_the_files_make_credentials_writes(tmp_path: Path) -> None:
    """The compose secrets are the development credentials as scripts.dev_credentials writes
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
