"""``serve --workers N``: N server processes sharing one port, under a small supervisor.

One Python process serves on one core (the GIL); a machine with more cores runs more processes.
The supervisor creates no gRPC object at all — it checks that the port is free, then *spawns*
each worker as a fresh interpreter (``python -m user_service serve`` with the same settings),
so no gRPC state ever crosses a ``fork()`` (grpcio does not survive one). The workers bind the
same port with ``SO_REUSEPORT``; the kernel spreads incoming *connections* across them (a
connection, and every call on it, stays with one worker).

* Port held by something else: the supervisor first binds the port itself *without*
  ``SO_REUSEPORT`` — which fails if any socket holds it, even another reuseport group — and
  refuses to start (exit 1). A second ``serve`` on the same port therefore fails instead of
  silently joining this one's workers.
* Shared state: every worker opens the same store; the change feed reads the outbox, so a
  subscriber on one worker receives the writes made on any other (``domain/relay.py``).
* Metrics: worker ``i`` serves /metrics on ``metrics_port + i`` — per-worker series (label
  ``instance`` after scraping) with exemplars intact. Prometheus's multiprocess mode would
  give one endpoint but cannot carry exemplars, which link latency to traces; a per-worker
  port costs one scrape target per worker instead.
* A worker that dies is started again (after a pause that grows while it keeps dying quickly);
  SIGTERM/SIGINT is passed to every worker, and the supervisor exits when all have drained. A
  supervisor that is killed outright (SIGKILL, OOM) takes its workers with it: each asks the
  kernel for a SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and drains.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from user_service.config import ServerSettings
from user_service.listening import PortInUseError

log = logging.getLogger(__name__)

WORKER_INDEX_ENV = "USER_SERVICE_WORKER_INDEX"
SUPERVISOR_PID_ENV = "USER_SERVICE_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1
_QUICK_DEATH = 5.0  # a worker dying sooner than this after its start is failing to start
_MAX_QUICK_DEATHS = 5


def die_with_supervisor() -> None:
    """Called first thing in a worker: SIGTERM when the supervisor dies, however it dies."""
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if supervisor is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("cannot ask to be stopped with the supervisor (prctl errno %d)", ctypes.get_errno())
    if os.getppid() != int(supervisor):  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def default_worker_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def claim_port(host: str, port: int) -> int:
    """Fails unless ``host:port`` is free; returns the port (a free one for port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR (as grpc sets it): connections of a previous run in TIME_WAIT do not
        # count as holding the port; a listening socket still does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            raise PortInUseError(f"cannot listen on {host}:{port}: {error.strerror}") from error
        return int(probe.getsockname()[1])


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self, settings: ServerSettings, workers: int) -> None:
        self._settings = settings
        self._count = workers
        self._workers: dict[int, _Worker] = {}
        self._stopping = threading.Event()
        self._quick_deaths = 0

    def run(self) -> int:
        port = claim_port(self._settings.host, self._settings.port)
        log.info("starting %d workers on %s:%d", self._count, self._settings.host, port)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        for index in range(self._count):
            self._spawn(index, port)
        failed = self._watch(port)
        self._drain()
        return 1 if failed else 0

    def _spawn(self, index: int, port: int) -> None:
        metrics_port = self._settings.metrics_port + index if self._settings.metrics_port else 0
        env = {
            **os.environ,
            **self._settings_env(),
            WORKER_INDEX_ENV: str(index),
            SUPERVISOR_PID_ENV: str(os.getpid()),
            "USER_SERVICE_PORT": str(port),
            "USER_SERVICE_METRICS_PORT": str(metrics_port),
            "USER_SERVICE_WORKERS": "1",
        }
        process = subprocess.Popen([sys.executable, "-m", "user_service", "serve"], env=env)
        self._workers[index] = _Worker(index, process)

    def _settings_env(self) -> dict[str, str]:
        """Every setting as the environment variable a worker reads it from: flags given to
        the supervisor reach the workers too."""
        values = self._settings.model_dump(mode="json")
        return {
            f"USER_SERVICE_{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
            for name, value in values.items()
            if value is not None
        }

    def _watch(self, port: int) -> bool:
        """Restarts workers that die until asked to stop; True when they keep failing."""
        while not self._stopping.wait(0.2):
            for index, worker in list(self._workers.items()):
                code = worker.process.poll()
                if code is None or self._stopping.is_set():
                    continue
                lived = time.monotonic() - worker.started
                self._quick_deaths = self._quick_deaths + 1 if lived < _QUICK_DEATH else 0
                log.error("worker %d exited with %s after %.1fs", index, code, lived)
                if self._quick_deaths >= _MAX_QUICK_DEATHS:
                    log.critical("workers keep failing at start; stopping")
                    self._stopping.set()
                    return True
                time.sleep(min(0.5 * 2**self._quick_deaths, 10))
                if not self._stopping.is_set():
                    self._spawn(index, port)
        return False

    def _stop(self, signum: int, _frame: object) -> None:
        self._stopping.set()

    def _drain(self) -> None:
        for worker in self._workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        patience = self._settings.drain_delay + self._settings.grace_period + 10
        deadline = time.monotonic() + patience
        for worker in self._workers.values():
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop within %.0fs; killing it", worker.index, patience)
                worker.process.kill()
                worker.process.wait()
