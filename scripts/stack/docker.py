"""Whether this machine can run docker-compose.yml, asked before anything is built: a missing
Compose plugin or an engine too old for the file fails at once, saying what is missing and how to
run the same stack without Docker, instead of failing halfway through ``up``.

The minimum versions come from what the file uses, checked in Docker Compose's own repository:
``healthcheck.start_interval`` (probing every second while a service starts, so ``up --wait``
returns early) arrived in Compose v2.24.0 and needs the Engine API 1.44 — Docker Engine 25.0 —
where Compose v2.24.1 and later refuse it below that (pkg/compose/convert.go:
``versions.LessThan(version, "1.44")``).
"""

from __future__ import annotations

import re
import shutil
import subprocess

MINIMUM_COMPOSE = (2, 24, 1)
MINIMUM_ENGINE_API = (1, 44)  # Docker Engine 25.0
NATIVE_HINT = "or run the same stack without Docker: STACK_ENGINE=native make up"


def engine_answers() -> bool:
    """A Docker client is installed and its engine answers."""
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


def compose_problem() -> str | None:
    """Why ``docker compose`` cannot run this stack here, or None when it can."""
    if shutil.which("docker") is None:
        return f"no Docker client found: install Docker Engine {_engine_minimum()} or later, {NATIVE_HINT}"
    found = subprocess.run(
        ["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=20, check=False
    )
    if found.returncode != 0:
        return (
            "the Docker Compose v2 plugin is missing (`docker compose version` failed:"
            f" {found.stderr.strip() or found.stdout.strip()}). Install Compose"
            f" {_dotted(MINIMUM_COMPOSE)} or later (Docker's docker-compose-plugin package), {NATIVE_HINT}"
        )
    if problem := compose_version_problem(found.stdout):
        return problem
    server = subprocess.run(
        ["docker", "version", "--format", "{{.Server.APIVersion}}"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if server.returncode != 0:
        return f"the Docker engine does not answer ({server.stderr.strip()}): start it, {NATIVE_HINT}"
    return engine_version_problem(server.stdout)


def compose_version_problem(reported: str) -> str | None:
    """What is wrong with the Compose version ``docker compose version --short`` printed."""
    if _at_least(reported, MINIMUM_COMPOSE):
        return None
    return (
        f"Docker Compose {reported.strip()} is older than {_dotted(MINIMUM_COMPOSE)}, the first that"
        f" runs this compose file (healthcheck.start_interval): upgrade it, {NATIVE_HINT}"
    )


def engine_version_problem(reported: str) -> str | None:
    """What is wrong with the Engine API version ``docker version`` printed for the server."""
    if _at_least(reported, MINIMUM_ENGINE_API):
        return None
    return (
        f"the Docker engine speaks API {reported.strip()}; this compose file needs Docker Engine"
        f" {_engine_minimum()} or later (healthcheck.start_interval): upgrade it, {NATIVE_HINT}"
    )


def parse_version(text: str) -> tuple[int, ...] | None:
    """``"v2.40.3"``, ``"2.24.1-desktop.1"`` or ``"1.44"`` as a tuple of numbers."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)+)", text)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def _at_least(reported: str, minimum: tuple[int, ...]) -> bool:
    version = parse_version(reported)
    return version is not None and version >= minimum


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _engine_minimum() -> str:
    return f"25.0 (API {_dotted(MINIMUM_ENGINE_API)})"
