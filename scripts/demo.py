"""`make demo`: a real server, a live subscriber, the seed's client walkthrough, telemetry.

Everything goes through the `user-service` CLI, exactly as a user would type it, so the
transcript doubles as documentation. Server and CLI export traces over OTLP to a small
local receiver; at the end the demo prints one call's trace tree and a /metrics excerpt.
Exits non-zero if any step does not behave.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scripts.dev_credentials import write_dev_credentials
from scripts.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.processes import free_port

CLI = str(Path(sys.executable).with_name("user-service"))
EXPECTED_EVENTS = 6  # 2 creates, 1 update, 1 delete, 2 batch creates
DEMO_REPORTS = Path("reports/demo")  # Locust's CSV and HTML of the demo's load run (git-ignored)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="user-service-demo-") as data_dir, OtlpReceiver() as traces:
        credentials = write_dev_credentials(Path(data_dir) / "credentials")  # generated, never committed
        # Inherited by the server and every CLI call below.
        os.environ.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=traces.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="200",
            USER_SERVICE_DATABASE_URL=f"sqlite:///{data_dir}/users.db",
            USER_SERVICE_LOG_FORMAT="text",
            **credentials.server_env(),
        )
        target = f"127.0.0.1:{free_port()}"
        host, port = target.split(":")
        metrics_port = str(free_port())
        server = subprocess.Popen(
            [
                CLI,
                "serve",
                "--host",
                host,
                "--port",
                port,
                "--metrics-port",
                metrics_port,
                "--grace-period",
                "5",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        server_log = LogTap(server)
        try:
            _wait_until_serving(target, deadline_s=15)
            os.environ["USER_SERVICE_TOKEN"] = _login(target, *credentials.secrets["admin"])
            reader_token = _login(target, *credentials.secrets["reader"])
            result = _walkthrough(target, reader_token)
            _print_metrics(f"http://127.0.0.1:{metrics_port}/metrics")
            with server_log.muted():
                result = result or _load_run(target, *credentials.secrets["admin"], DEMO_REPORTS)
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=15)
            print(f"\n== server stopped on SIGTERM with exit code {code}")
        _print_trace(traces.spans(), root_name="user-service-cli create")
        return result


class LogTap:
    """Prints the server's log lines as they come — except while muted (the load run would
    print thousands of access lines), then it says how many it held back."""

    def __init__(self, server: subprocess.Popen[str]) -> None:
        self._muted = threading.Event()
        self._held_back = 0
        self._thread = threading.Thread(target=self._copy, args=(server,), daemon=True)
        self._thread.start()

    def _copy(self, server: subprocess.Popen[str]) -> None:
        assert server.stderr is not None
        for line in server.stderr:
            if self._muted.is_set():
                self._held_back += 1
            else:
                print(line, end="", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def muted(self) -> Iterator[None]:
        self._muted.set()
        try:
            yield
        finally:
            self._muted.clear()
            print(f"   ({self._held_back} server log lines of the load run not shown)", flush=True)


def _load_run(target: str, client_id: str, secret: str, report_dir: Path) -> int:
    """A short headless Locust run (what `make load` does) and its per-RPC table."""
    print("\n== load: 6 s of Locust against the server — a CRUD mix, streams of every kind, 2 subscribers")
    env = {
        **os.environ,
        "USER_SERVICE_TARGET": target,
        "USER_SERVICE_CLIENT_ID": client_id,
        "USER_SERVICE_CLIENT_SECRET": secret,
        "LOAD_SUBSCRIBERS": "2",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
    }
    python = sys.executable
    locust = str(Path(python).with_name("locust"))
    subprocess.run([python, "-m", "loadtest.seed"], env=env, check=True, timeout=60)
    command = [
        locust, "-f", "loadtest/locustfile.py", "--headless", "--only-summary", "--users", "12",
        "--spawn-rate", "12", "--run-time", "6s", "--stop-timeout", "5", "--processes", "1",
        "--exit-code-on-error", "0",
        "--csv", str(report_dir / "locust"), "--html", str(report_dir / "report.html"),
    ]  # fmt: skip
    report_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(command, env=env, check=True, timeout=120, capture_output=True)
    print(f"$ {Path(python).name} -m loadtest.report  (the same table `make load` prints)", flush=True)
    return subprocess.run([python, "-m", "loadtest.report", str(report_dir)], env=env, timeout=60).returncode


def _login(target: str, client_id: str, secret: str) -> str:
    """`user-service login`, with the secret passed through the environment as a user would."""
    print(f"\n$ USER_SERVICE_CLIENT_SECRET=... user-service login --client-id {client_id} --target {target}")
    result = subprocess.run(
        [CLI, "login", "--client-id", client_id, "--target", target],
        env={**os.environ, "USER_SERVICE_CLIENT_SECRET": secret},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    response = json.loads(result.stdout)
    print(f"   token for roles {response['roles']}, expires {response['expire_time']} (not shown)")
    return str(response["access_token"])


def _walkthrough(target: str, reader_token: str) -> int:
    base = ["--target", target]
    print("\n== subscriber: replays history from event 0, then follows live events")
    subscriber = subprocess.Popen(
        [CLI, "subscribe", "--since", "0", "--limit", str(EXPECTED_EVENTS), "--timeout", "30", *base],
        stdout=subprocess.PIPE,
        text=True,
    )
    events: list[dict[str, Any]] = []
    reader = threading.Thread(target=_follow, args=(subscriber, events), daemon=True)
    reader.start()

    alice = _cli("create", "--name", "Alice", "--email", "alice@example.com", *base)["user"]
    bob = _cli("create", "--name", "Bob", "--email", "bob@example.com", *base)["user"]
    _cli("get", alice["id"], *base)
    _cli("list", "--page-size", "1", *base)
    _cli("list", "--all", *base)
    _cli("update", alice["id"], "--name", "Alice Liddell", "--etag", alice["etag"], *base)
    _cli("update", alice["id"], "--name", "Stale write", "--etag", alice["etag"], *base, expect="ABORTED")
    _cli("delete", bob["id"], *base, "--token", reader_token, expect="PERMISSION_DENIED")
    _cli("delete", bob["id"], *base)
    _cli("get", bob["id"], *base, expect="NOT_FOUND")
    _cli("create", "--name", "", "--email", "not-an-email", *base, expect="INVALID_ARGUMENT")
    batch = "".join(
        json.dumps(user) + "\n"
        for user in (
            {"name": "Carol", "email": "carol@example.com"},
            {"name": "Dave", "email": "dave@example.com"},
            {"name": "Alice again", "email": "alice@example.com"},
        )
    )
    created = _cli("batch-create", *base, stdin=batch)
    _cli(
        "lookup",
        alice["id"],
        *(result["user"]["id"] for result in created["results"] if "user" in result),
        *base,
    )

    subscriber.wait(timeout=30)
    reader.join(timeout=5)
    event_ids = [int(event["event_id"]) for event in events]
    if event_ids != list(range(1, EXPECTED_EVENTS + 1)) or subscriber.returncode != 0:
        print(f"!! subscriber saw events {event_ids}, expected 1..{EXPECTED_EVENTS}", file=sys.stderr)
        return 1
    print(f"\n== subscriber received all {EXPECTED_EVENTS} events, in event_id order")
    return 0


def _cli(*args: str, expect: str = "OK", stdin: str | None = None) -> Any:
    shown = [
        arg if previous != "--token" else "$READER_TOKEN"
        for previous, arg in zip(["", *args], args, strict=False)
    ]
    print(f"\n$ user-service {shlex.join(shown)}" + (" < users.jsonl" if stdin else ""), flush=True)
    result = subprocess.run([CLI, *args], input=stdin, capture_output=True, text=True, timeout=30)
    output = result.stdout if result.returncode == 0 else result.stderr
    print(output.rstrip(), flush=True)
    code = "OK" if result.returncode == 0 else json.loads(result.stderr)["error"]["code"]
    if code != expect:
        raise SystemExit(f"!! expected {expect}, got {code}")
    return json.loads(result.stdout.splitlines()[-1]) if result.returncode == 0 else None


def _follow(subscriber: subprocess.Popen[str], events: list[dict[str, Any]]) -> None:
    assert subscriber.stdout is not None
    for line in subscriber.stdout:
        event = json.loads(line)
        events.append(event)
        print(
            f"   [subscriber] event {event['event_id']}: {event['type']} user {event['user']['id']}",
            flush=True,
        )


def _print_metrics(url: str) -> None:
    print(f"\n== {url} (excerpt: go-grpc-middleware series of CreateUser)")
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if (
                line.startswith(("grpc_server_handled_total", "grpc_server_started_total"))
                and 'grpc_method="CreateUser"' in line
            ):
                print("   " + line)


def _print_trace(spans: list[ReceivedSpan], root_name: str) -> None:
    """The trace of the first CLI call named ``root_name``, as an indented tree."""
    root = next(span for span in spans if span.name == root_name)
    in_trace = [span for span in spans if span.trace_id == root.trace_id]
    print(f"\n== trace {root.trace_id} of the first `{root_name}` (as exported over OTLP)")

    def show(span: ReceivedSpan, depth: int) -> None:
        print(f"   {'  ' * depth}{span.service:<17} {span.kind:<8} {span.name}")
        for child in in_trace:
            if child.parent_span_id == span.span_id:
                show(child, depth + 1)

    show(root, 0)


def _wait_until_serving(target: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                response = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    print(f"== server is SERVING on {target}")
                    return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)


if __name__ == "__main__":
    raise SystemExit(main())
