"""`make up` with Docker asks first whether this machine can run the compose file, using the real
Docker client and the real Compose plugin (built by `make tools`): what is missing is named, with
the native way to run the same stack, before anything is built or started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.stack.docker import (
    MINIMUM_COMPOSE,
    compose_problem,
    compose_version_problem,
    engine_version_problem,
    parse_version,
)
from tests.conftest import require_tool
from tests.stack.conftest import env_versions

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Docker client configuration of this test's own (no CLI plugin unless the test adds one),
    talking to an engine socket where nothing listens."""
    require_tool("docker")
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    return config


def install_compose_plugin(config: Path) -> None:
    plugins = config / "cli-plugins"
    plugins.mkdir()
    (plugins / "docker-compose").symlink_to(require_tool("docker-compose"))


def test_a_missing_compose_plugin_is_named_with_the_native_alternative(docker_config: Path) -> None:
    """The Docker client without its Compose plugin: the problem says the plugin is missing, the
    minimum version, and how to run natively."""
    problem = compose_problem()
    assert problem is not None
    assert "Compose v2 plugin is missing" in problem
    assert ".".join(map(str, MINIMUM_COMPOSE)) in problem
    assert "STACK_ENGINE=native make up" in problem


def test_with_a_recent_compose_an_engine_that_does_not_answer_is_named(docker_config: Path) -> None:
    """With the pinned Compose as the client's plugin, its version passes the check (it reports
    the version .env pins, not "dev"); an engine that does not answer is then the problem."""
    install_compose_plugin(docker_config)
    reported = subprocess.run(
        ["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=30, check=True
    )
    assert parse_version(reported.stdout) == parse_version(env_versions()["COMPOSE_VERSION"])
    problem = compose_problem()
    assert problem is not None
    assert "engine does not answer" in problem
    assert "STACK_ENGINE=native" in problem


def test_make_up_with_docker_refuses_before_building_anything(docker_config: Path, tmp_path: Path) -> None:
    """`python -m scripts.stack up --engine docker` (what `make up` runs) exits 1 with the
    problem on stderr and starts no build."""
    result = subprocess.run(
        [sys.executable, "-m", "scripts.stack", "up", "--engine", "docker"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
        env={**os.environ, "STACK_RUN_DIR": str(tmp_path / "stack")},
    )
    assert result.returncode == 1
    assert "make up with Docker cannot start: the Docker Compose v2 plugin is missing" in result.stderr
    assert "STACK_ENGINE=native" in result.stderr
    assert "Building" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "version"),
    [("v2.40.3\n", (2, 40, 3)), ("2.24.1-desktop.1", (2, 24, 1)), ("1.44", (1, 44)), ("dev", None)],
)
def test_versions_are_read_as_docker_prints_them(text: str, version: tuple[int, ...] | None) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize(
    ("reported", "refused"), [("2.20.2", True), ("dev", True), ("2.24.1", False), ("v2.40.3", False)]
)
def test_compose_older_than_the_first_with_start_interval_is_refused(reported: str, refused: bool) -> None:
    """Compose before 2.24.1 (or one that cannot say its version) is refused, naming the minimum."""
    problem = compose_version_problem(reported)
    assert (problem is not None) == refused
    if problem:
        assert "older than 2.24.1" in problem
        assert "STACK_ENGINE=native" in problem


@pytest.mark.parametrize(("reported", "refused"), [("1.43", True), ("1.44", False), ("1.51\n", False)])
def test_an_engine_before_25_is_refused(reported: str, refused: bool) -> None:
    """Engine API below 1.44 (Docker Engine 25.0) is refused, naming Engine 25.0."""
    problem = engine_version_problem(reported)
    assert (problem is not None) == refused
    if problem:
        assert "Docker Engine 25.0" in problem
