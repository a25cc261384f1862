"""The stack as native processes: started detached (they outlive ``make up``), each with a pid
file and a log under the run folder, stopped by ``make down`` — or by the tests that own them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from scripts.stack.components import components
from scripts.stack.plan import StackPlan


class StackError(RuntimeError):
    """A component did not start or did not become ready; the message carries its log's tail."""


@dataclass(frozen=True)
class ComponentState:
    name: str
    pid: int | None
    ready: bool
    rss_bytes: int | None
    url: str


class NativeStack:
    def __init__(self, plan: StackPlan, service_env: dict[str, str] | None = None) -> None:
        self.plan = plan
        self.components = {c.name: c for c in components(plan, service_env or {})}
        # Processes this object started; reaped when stopped (`make up` itself exits and
        # leaves them running: they are then found again through their pid files).
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def up(self, *, timeout: float = 60.0, progress: Callable[[str], None] = print) -> float:
        """Starts what is not running yet and waits until every component is ready.
        Returns the seconds that took. On failure, stops what it started and raises."""
        started = time.monotonic()
        self.plan.save()
        self.plan.logs.mkdir(parents=True, exist_ok=True)
        launched = [c.name for c in self.components.values() if self._process(c.name) is None]
        for name in launched:
            self.start(name)
        waiting = set(self.components)
        while waiting:
            for name in sorted(waiting):
                if self.components[name].ready():
                    waiting.discard(name)
                    progress(f"  {name:<15} ready after {time.monotonic() - started:4.1f} s")
                elif self._process(name) is None:
                    self._fail(launched, f"{name} exited during start")
            if waiting and time.monotonic() - started > timeout:
                self._fail(launched, f"not ready after {timeout:.0f} s: {', '.join(sorted(waiting))}")
            time.sleep(0.05)
        return time.monotonic() - started

    def start(self, name: str) -> None:
        component = self.components[name]
        log = (self.plan.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            component.argv,
            env={**os.environ, **component.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the terminal of `make up`; not hit by its Ctrl-C
        )
        log.close()
        self._children[name] = process
        self._pid_file(name).parent.mkdir(parents=True, exist_ok=True)
        self._pid_file(name).write_text(
            json.dumps({"pid": process.pid, "create_time": psutil.Process(process.pid).create_time()})
        )

    def stop(self, name: str, *, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; a no-op for a component that is not running."""
        process = self._process(name)
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except psutil.TimeoutExpired:
                process.kill()
                process.wait(5)
        child = self._children.pop(name, None)
        if child is not None:
            child.wait(5)
        self._pid_file(name).unlink(missing_ok=True)

    def wait_ready(self, name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.components[name].ready():
            if time.monotonic() > deadline:
                raise StackError(f"{name} not ready after {timeout:.0f} s\n{self.log_tail(name)}")
            time.sleep(0.05)

    def down(self) -> list[str]:
        """Stops every component, the service first (it drains and flushes its spans to a
        Collector that is still there). Returns the names that were running."""
        running = [name for name in reversed(self.components) if self._process(name) is not None]
        for name in reversed(self.components):
            self.stop(name)
        return running

    def status(self) -> list[ComponentState]:
        states = []
        for name, component in self.components.items():
            process = self._process(name)
            rss = None
            if process is not None:
                with contextlib.suppress(psutil.NoSuchProcess):  # exited since the look above
                    rss = process.memory_info().rss
            states.append(
                ComponentState(
                    name=name,
                    pid=process.pid if process else None,
                    ready=process is not None and component.ready(),
                    rss_bytes=rss,
                    url=component.url,
                )
            )
        return states

    def log_tail(self, name: str, lines: int = 30) -> str:
        log = self.plan.logs / f"{name}.log"
        if not log.exists():
            return f"(no log at {log})"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def _process(self, name: str) -> psutil.Process | None:
        """The component's live process — checked by start time too: a recycled pid is not it."""
        try:
            saved = json.loads(self._pid_file(name).read_text())
            process = psutil.Process(saved["pid"])
            if process.create_time() != saved["create_time"] or process.status() == psutil.STATUS_ZOMBIE:
                return None
            return process
        except (FileNotFoundError, json.JSONDecodeError, psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def _pid_file(self, name: str) -> Path:
        return self.plan.run_dir / "pids" / f"{name}.json"

    def _fail(self, launched: list[str], reason: str) -> None:
        logs = "\n".join(
            f"--- {name} ({self.plan.logs / name}.log):\n{self.log_tail(name)}" for name in launched
        )
        for name in reversed(launched):
            self.stop(name)
        raise StackError(f"{reason}\n{logs}")
