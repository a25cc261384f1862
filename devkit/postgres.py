"""A throwaway PostgreSQL cluster on a loopback port, for tests and benchmarks.

The server binaries come from the distribution (Debian: ``apt-get install postgresql``,
found under ``/usr/lib/postgresql/<version>/bin``; ``PG_BINDIR`` points elsewhere). PostgreSQL
refuses to run as root, so as root the cluster is initialised and run as the ``postgres``
system user (the package creates it), its directory handed to that user. Authentication is ``trust`` on
127.0.0.1 only: the cluster lives as long as the test session and listens nowhere else.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPERUSER = "postgres"
_INITDB_OPTIONS = ("--no-sync", "--encoding=UTF8", "--locale=C")
_SERVER_SETTINGS = ("listen_addresses=127.0.0.1", "max_connections=200", "shared_buffers=64MB")


def server_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``, the newest installed version first."""
    configured = os.environ.get("PG_BINDIR")
    if configured:
        return Path(configured) if (Path(configured) / "initdb").exists() else None
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parent.parent.name)
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class PostgresCluster:
    """``start()`` runs ``initdb`` (once) and the server; ``stop()`` stops the server and removes
    its files, ``stop(keep_data=True)`` only stops it — a later ``start()`` resumes the data."""

    bindir: Path
    port: int
    directory: Path | None = None
    settings: tuple[str, ...] = ()  # more "name=value" server settings; they win over the defaults
    _server: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.database_url(SUPERUSER)

    def database_url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self, *, timeout: float = 60) -> PostgresCluster:
        account = pwd.getpwnam(SUPERUSER) if os.geteuid() == 0 else None
        run_as: dict[str, Any] = {}
        if account is not None:
            run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="user-service-pg-"))
            self._initdb(run_as, account)
        data, sockets = self.directory / "data", self.directory / "sockets"
        settings = [
            option
            for setting in (*_SERVER_SETTINGS, *self.settings, f"unix_socket_directories={sockets}")
            for option in ("-c", setting)
        ]
        log = open(self.directory / "server.log", "ab")  # noqa: SIM115 - the server writes it until stop()
        self._server = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port), *settings],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            **run_as,
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def _initdb(self, run_as: dict[str, Any], account: pwd.struct_passwd | None) -> None:
        assert self.directory is not None
        data, sockets = self.directory / "data", self.directory / "sockets"
        sockets.mkdir()
        if account is not None:
            for path in (self.directory, sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", *_INITDB_OPTIONS],
            check=True,
            capture_output=True,
            cwd=self.directory,
            **run_as,
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server is not None and self._server.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log()}")
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"postgres not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        path = self.directory / "server.log" if self.directory else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self, *, keep_data: bool = False) -> None:
        if self._server is not None:
            self._server.send_signal(signal.SIGINT)  # "fast" shutdown; SIGTERM waits for clients
            try:
                self._server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
            self._server = None
        if self.directory is not None and not keep_data:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
