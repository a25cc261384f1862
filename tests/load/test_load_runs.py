"""Headless Locust runs against a real server process: statistics that agree with the
server's own counters, failures classified by status code, a gate that fails a bad run,
worker processes counted once, traces that start at the load generator.

Locust runs as a subprocess, as ``make load`` runs it: importing it here would
monkey-patch this test process for gevent.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil

from devkit.dev_credentials import DevCredentials
from devkit.otlp_receiver import OtlpReceiver
from devkit.processes import ServerProcess
from loadtest.report import read_rows
from loadtest.seed import is_seeded
from loadtest.settings import LoadSettings
from tests.load.conftest import EVERY_SCENARIO, REPO, load
from user_service.client import bearer, login
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc


def test_a_run_exercises_every_scenario_and_agrees_with_the_server(
    server: ServerProcess, credentials: DevCredentials, tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    run = load(server, credentials, tmp_path, otlp_receiver)
    assert run.returncode == 0, run.output
    assert "gate passed" in run.output
    assert (tmp_path / "report.html").stat().st_size > 10_000
    counts = run.counts()
    assert {key for key, (requests, _) in counts.items() if requests > 0} >= EVERY_SCENARIO, counts
    assert sum(failures for _, failures in counts.values()) == 0, run.failures()
    for kind, method in [
        ("unary", "GetUser"),
        ("unary", "CreateUser"),
        ("bidi_stream", "LookupUsers"),
        ("client_stream", "BatchCreateUsers"),
    ]:
        locust, _ = counts[(kind, method)]
        seen = server.metric(
            f'grpc_server_handled_total{{grpc_code="OK",grpc_method="{method}",'
            f'grpc_service="user.v1.UserService",grpc_type="{kind}"}}'
        )
        seen -= 1 if method == "BatchCreateUsers" else 0  # the seed step's batch
        assert abs(seen - locust) <= max(2, locust * 0.02), f"{method}: Locust {locust}, server {seen}"


def test_sizes_are_payload_bytes_and_messages_per_call_are_counted(
    server: ServerProcess, credentials: DevCredentials, tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    """Locust's size column once held message counts (1, 5, 10) under "Average size (bytes)";
    it holds the serialized bytes received now, and the messages are a column of our own."""
    run = load(server, credentials, tmp_path, otlp_receiver, LOAD_LOOKUP_SIZE="3", LOAD_BATCH_SIZE="7")
    assert run.returncode == 0, run.output
    rows = {(row.type, row.name): row for row in read_rows(tmp_path / "locust_stats.csv")[0]}
    # Readers ask for seeded users; every one of their GetUser answers has one of these sizes.
    with grpc.insecure_channel(server.target) as channel:
        token = login(channel, *credentials.secrets["admin"])
        seeded = user_pb2_grpc.UserServiceStub(channel).ListUsers(
            user_pb2.ListUsersRequest(page_size=100), metadata=bearer(token), timeout=5
        )
    answers = [user_pb2.GetUserResponse(user=user).ByteSize() for user in seeded.users if is_seeded(user)]
    get_user = rows[("unary", "GetUser")]
    assert min(answers) <= get_user.bytes_per_request <= max(answers), (get_user, answers)
    assert get_user.messages_per_request == 1
    assert rows[("bidi_stream", "LookupUsers")].messages_per_request == 3
    assert 3 * min(answers) <= rows[("bidi_stream", "LookupUsers")].bytes_per_request <= 3 * max(answers)
    assert rows[("client_stream", "BatchCreateUsers")].messages_per_request == 7
    delivery, streams = (
        rows[("server_stream", "SubscribeUsers delivery")],
        rows[("server_stream", "SubscribeUsers stream")],
    )
    assert delivery.bytes_per_request > 20
    assert delivery.messages_per_request == 1
    assert streams.messages_per_request == delivery.requests / streams.requests
    assert "bytes" in run.output
    assert "msgs" in run.output


def test_traces_start_at_the_load_generator(
    server: ServerProcess, credentials: DevCredentials, tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    otlp_receiver.clear()
    load(server, credentials, tmp_path, otlp_receiver, seconds=4)
    deadline = time.monotonic() + 10
    while True:
        spans = otlp_receiver.spans()
        clients = {
            span.span_id: span
            for span in spans
            if span.service == "user-service-loadgen" and span.kind == "CLIENT"
        }
        continued = [
            span for span in spans if span.service == "user-service" and span.parent_span_id in clients
        ]
        if continued or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert continued, "no server span continues a load generator span"
    client = clients[continued[0].parent_span_id]
    assert client.resource["user_agent.synthetic.type"] == "test"
    assert client.trace_id == continued[0].trace_id


def test_a_failing_service_fails_the_gate_with_failures_named_by_status_code(
    server: ServerProcess, credentials: DevCredentials, tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    """Nothing seeded, only reads of users that do not exist: every call is NOT_FOUND."""
    run = load(server, credentials, tmp_path, otlp_receiver, seed=False, seconds=4, LOAD_MIX="get=1")
    assert run.returncode == 1, run.output
    assert "GATE FAILED: failure ratio" in run.output
    failures = run.failures()
    assert failures, run.output
    assert {code for (name, code) in failures if name == "GetUser"} == {"NOT_FOUND"}
    assert "NOT_FOUND" in run.output


def test_worker_processes_are_counted_once_and_leave_nothing_behind(
    server: ServerProcess, credentials: DevCredentials, tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    before = {process.pid for process in psutil.process_iter() if "locust" in " ".join(process.cmdline())}
    run = load(server, credentials, tmp_path, otlp_receiver, processes=2)
    assert run.returncode == 0, run.output
    locust, _ = run.counts()[("unary", "GetUser")]
    seen = server.metric(
        'grpc_server_handled_total{grpc_code="OK",grpc_method="GetUser",'
        'grpc_service="user.v1.UserService",grpc_type="unary"}'
    )
    assert abs(seen - locust) <= max(2, locust * 0.02), f"Locust {locust}, server {seen}"
    time.sleep(1)
    after = {process.pid for process in psutil.process_iter() if "locust" in " ".join(process.cmdline())}
    assert after <= before, "worker processes outlived the run"


def test_unary_traffic_keeps_flowing_while_many_streams_sit_idle(
    server: ServerProcess, credentials: DevCredentials, tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    """Held streams once stalled every other call of the generator (gevent's thread pool,
    per-user channels) while Locust recorded no failure. 30 idle subscriptions, 6 paced
    CRUD users: the CRUD calls must keep their pace."""
    seconds, crud_users, user_rps = 8, 6, 10
    run = load(
        server,
        credentials,
        tmp_path,
        otlp_receiver,
        seconds=seconds,
        users=30 + crud_users,
        LOAD_SUBSCRIBERS="30",
        LOAD_MIX="get=1",
        LOAD_USER_RPS=str(user_rps),
        OTEL_SDK_DISABLED="true",
    )
    assert run.returncode == 0, run.output
    counts = run.counts()
    assert counts[("server_stream", "SubscribeUsers stream")][0] >= 30
    paced = crud_users * user_rps * seconds
    assert counts[("unary", "GetUser")][0] >= 0.5 * paced, (
        f"{counts[('unary', 'GetUser')]} of ~{paced} paced calls"
    )


def test_a_clean_run_with_worker_processes_has_no_failures(
    server: ServerProcess, credentials: DevCredentials, tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    """A failure in a clean run must mean something: with several processes, each lists the
    users to read when it starts — none may be one another process's writers delete later."""
    run = load(
        server,
        credentials,
        tmp_path,
        otlp_receiver,
        processes=2,
        seconds=12,
        users=16,
        LOAD_MIX="get=4,lookup=2,create=4,delete=4",
    )
    assert run.returncode == 0, run.output
    assert run.failures() == {}, run.output
    # Messages are counted in the workers and summed in the master (Locust's worker reports).
    lookups = {(row.type, row.name): row for row in read_rows(tmp_path / "locust_stats.csv")[0]}[
        ("bidi_stream", "LookupUsers")
    ]
    assert lookups.messages_per_request == LoadSettings().lookup_size, lookups


def test_plain_locust_refuses_to_start_and_names_the_command_to_use() -> None:
    """Plain `locust` patches threads, so grpc.aio's poller would be a greenlet and every call
    would hang: the locustfile stops it at once, naming `python -m loadtest`."""
    locust = str(Path(sys.executable).with_name("locust"))
    ran = subprocess.run(
        [locust, "-f", "loadtest/locustfile.py", "--headless", "-t", "1s"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ran.returncode != 0
    assert "python -m loadtest" in ran.stdout + ran.stderr
