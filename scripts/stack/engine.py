"""Starting and stopping the stack, with Docker or without: the one recipe ``make up``/``make
down``, the demo and the tests call.

``up`` picks the engine (``STACK_ENGINE=auto|docker|native``; auto = Docker compose when an
engine answers), refuses early when Docker cannot run the compose file (``docker.py``), builds
what the engine needs — images, or the native binaries — and only then starts the stack, so the
time a stack takes to start is never mixed with a first run's build.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from devkit.dev_credentials import ensure_dev_credentials
from scripts.stack.docker import compose_problem, engine_answers
from scripts.stack.native import NativeStack, StackError
from scripts.stack.plan import REPO, StackPlan

Engine = Literal["docker", "native"]
COMPOSE_UP = ["up", "--detach", "--wait", "--wait-timeout", "180"]


class StackRefusedError(Exception):
    """The stack cannot start here; the message says why and what to do."""


@dataclass(frozen=True)
class StartedStack:
    engine: Engine
    native: NativeStack | None  # None with Docker (`docker compose ps` and `docker stats` show it)
    build_seconds: float  # images or native binaries; ~0 once cached
    start_began: float  # time.monotonic() when the stack itself began to start, after the build
    ready_seconds: float


def choose_engine(requested: str | None = None) -> Engine:
    """``requested`` (or STACK_ENGINE): docker, native, or auto."""
    wanted = requested or os.environ.get("STACK_ENGINE", "auto")
    if wanted == "auto":
        return "docker" if engine_answers() else "native"
    if wanted not in ("docker", "native"):
        raise StackRefusedError(f"STACK_ENGINE={wanted!r}: use auto, docker or native")
    return "docker" if wanted == "docker" else "native"


def up(plan: StackPlan, engine: Engine, *, progress: Callable[[str], None] = print) -> StartedStack:
    """Builds what is missing, starts the stack and waits until every component is healthy."""
    building = time.monotonic()
    if engine == "docker":
        if problem := compose_problem():
            raise StackRefusedError(f"make up with Docker cannot start: {problem}")
        ensure_dev_credentials(REPO / ".dev/credentials")  # mounted as compose secrets
        _compose("build")
        built = time.monotonic()
        _compose(*COMPOSE_UP)
        return StartedStack(engine, None, built - building, built, time.monotonic() - built)

    credentials = ensure_dev_credentials(plan.credentials_dir)
    stack = NativeStack(plan, credentials.server_env())
    running = StackPlan.load(plan.run_dir)
    if running.replicas != plan.replicas and any(state.pid for state in stack.status()):
        raise StackRefusedError(f"a stack with {running.replicas} replica(s) is running: `make down` first")
    build_native_binaries()
    built = time.monotonic()
    progress(f"Starting the stack as native processes; logs in {plan.logs}")
    try:
        ready = stack.up(progress=progress)
    except StackError as error:
        raise StackRefusedError(f"make up failed: {error}") from error
    return StartedStack(engine, stack, built - building, built, ready)


def down(plan: StackPlan, engine: Engine) -> list[str]:
    """Stops the stack; what was stopped (compose: the project)."""
    if engine == "docker":
        _compose("down", "--remove-orphans")
        return ["the compose project"]
    credentials = ensure_dev_credentials(plan.credentials_dir)
    return NativeStack(plan, credentials.server_env()).down()


def build_native_binaries() -> None:
    """The pinned Collector, Prometheus and Jaeger (minutes on a cold cache, with progress on
    stderr; instant once cached)."""
    subprocess.run([str(REPO / "scripts/install-tools.sh"), "stack"], check=True, stdout=subprocess.DEVNULL)


def _compose(*argv: str) -> None:
    result = subprocess.run(["docker", "compose", *argv], cwd=REPO, check=False)
    if result.returncode != 0:
        raise StackRefusedError(f"`docker compose {' '.join(argv)}` failed (exit {result.returncode})")
