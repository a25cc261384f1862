"""Faults on purpose in the service's resources, against server processes at production defaults
on SQLite and on a real PostgreSQL: a slow database (the store span is the slow one, and on
PostgreSQL the time is spent by the database itself), a pool starved to one connection
(statements queue, and say so in the wait metric and on their spans), a bounded memory leak that
is given back when off, and a CPU hog that holds the replica's core while on."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import grpc
import pytest

from devkit.dev_credentials import DevCredentials
from devkit.otlp_receiver import OtlpReceiver, ReceivedSpan
from devkit.processes import ServerProcess
from scripts.stack.observe import eventually
from tests.faults.conftest import admin, switch, wait_in_effect
from user_service.client import Metadata
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

SLOW_SECONDS = 0.15  # userServiceSlowDatabase=statements150ms
MIB = 1 << 20
BOTH_BACKENDS = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite, or PostgreSQL for a test parametrized with ``BOTH_BACKENDS``."""
    if getattr(request, "param", "sqlite") == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path}/users.db"


def list_users(server: ServerProcess, metadata: Metadata, trace_id: str | None = None) -> None:
    """One ListUsers call (a store statement), carrying a sampled ``traceparent`` if given."""
    if trace_id is not None:
        metadata = (*metadata, ("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"))
    with grpc.insecure_channel(server.target) as channel:
        user_pb2_grpc.UserServiceStub(channel).ListUsers(
            user_pb2.ListUsersRequest(page_size=5), metadata=metadata, timeout=30
        )


def trace_spans(receiver: OtlpReceiver, trace_id: str, count: int) -> list[ReceivedSpan]:
    found = eventually(lambda: [s for s in receiver.spans() if s.trace_id == trace_id] or None, timeout=10)
    assert found, f"trace {trace_id} never exported"
    time.sleep(0.5)  # the rest of the trace's spans, exported in the same or the next batch
    spans = [s for s in receiver.spans() if s.trace_id == trace_id]
    assert len(spans) >= count, spans
    return spans


def _settled(read: Callable[[], float], quiet: float = 1.0, within: float = 20) -> float:
    """``read()`` once it has not changed for ``quiet`` seconds."""
    give_up = time.monotonic() + within
    value = read()
    while time.monotonic() < give_up:
        time.sleep(quiet)
        if (latest := read()) == value:
            return value
        value = latest
    raise AssertionError(f"still changing after {within} s: {value}")


def store_span(spans: list[ReceivedSpan]) -> ReceivedSpan:
    (span,) = [s for s in spans if s.kind == "CLIENT" and s.name == "SELECT users"]
    return span


@BOTH_BACKENDS
def test_a_slow_database_makes_the_store_span_the_slow_one(
    start: Callable[[str], ServerProcess],
    credentials: DevCredentials,
    flags_file: Path,
    otlp_receiver: OtlpReceiver,
    database_url: str,
) -> None:
    """statements150ms: every statement takes 150 ms longer, inside the store's span, which
    carries the flag's attributes; on PostgreSQL the database itself sleeps (pg_sleep on the
    statement's connection, visible in pg_stat_activity). Off, statements are plain again."""
    server = start("a")
    metadata = admin(server, credentials)
    switch(flags_file, "userServiceSlowDatabase", "statements150ms")
    wait_in_effect(server, "userServiceSlowDatabase", "statements150ms")

    trace_id = secrets.token_hex(16)
    sleeping_in_database: list[str] = []
    if database_url.startswith("postgresql"):
        call = threading.Thread(target=list_users, args=(server, metadata, trace_id))
        call.start()
        sleeping_in_database = asyncio.run(_statements_running(database_url, "pg_sleep"))
        call.join()
        assert sleeping_in_database, "no pg_sleep ran in the database during the slow call"
    else:
        list_users(server, metadata, trace_id)

    span = store_span(trace_spans(otlp_receiver, trace_id, 2))
    assert span.duration_seconds >= SLOW_SECONDS
    assert span.attributes["feature_flag.key"] == "userServiceSlowDatabase"
    assert span.attributes["feature_flag.result.variant"] == "statements150ms"
    assert span.attributes["user_service.fault.effect"] == "slow statement"
    slowed = (
        'user_service_faults_injected_total{effect="slow statement",'
        'flag="userServiceSlowDatabase",variant="statements150ms"}'
    )
    assert server.metric(slowed) >= 1

    switch(flags_file, "userServiceSlowDatabase", None)
    wait_in_effect(server, "userServiceSlowDatabase", "off")
    before = server.metric(slowed)
    plain = secrets.token_hex(16)
    list_users(server, metadata, plain)
    assert "feature_flag.key" not in store_span(trace_spans(otlp_receiver, plain, 2)).attributes
    assert server.metric(slowed) == before


async def _statements_running(database_url: str, needle: str, within: float = 5.0) -> list[str]:
    """The statements containing ``needle`` that other sessions run, polled until one shows."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            rows = await connection.fetch(
                "SELECT query FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()"
                " AND query LIKE $1",
                f"%{needle}%",
            )
            if rows:
                return [row["query"] for row in rows]
            await asyncio.sleep(0.01)
        return []
    finally:
        await connection.close()


@BOTH_BACKENDS
def test_a_pool_starved_to_one_connection_queues_statements_and_says_so(
    start: Callable[[str], ServerProcess],
    credentials: DevCredentials,
    flags_file: Path,
    otlp_receiver: OtlpReceiver,
    database_url: str,
) -> None:
    """oneConnection (with slow statements, HotROD's story): concurrent calls take their turn on
    the one connection — the waits show in db_client_connection_wait_time_seconds, on the waiting
    store spans, and as spans over each wait, inside the store span, with the flag's attributes.
    Off, the same calls do not wait."""
    server = start("a")
    metadata = admin(server, credentials)
    switch(flags_file, "userServiceSlowDatabase", "statements150ms")
    switch(flags_file, "userServicePoolStarvation", "oneConnection")
    wait_in_effect(server, "userServicePoolStarvation", "oneConnection")
    wait_in_effect(server, "userServiceSlowDatabase", "statements150ms")
    kind = "postgresql" if database_url.startswith("postgresql") else "sqlite"

    def long_waits() -> float:
        """Statements that waited over 100 ms for their connection."""
        labels = f'db_system_name="{kind}"'
        count = server.metric(f"db_client_connection_wait_time_seconds_count{{{labels}}}")
        return count - server.metric(f'db_client_connection_wait_time_seconds_bucket{{{labels},le="0.1"}}')

    before = long_waits()
    trace_ids = [secrets.token_hex(16) for _ in range(4)]
    with ThreadPoolExecutor(len(trace_ids)) as pool:
        list(pool.map(lambda trace_id: list_users(server, metadata, trace_id), trace_ids))
    assert long_waits() - before >= 2, "four concurrent statements on one connection did not queue"
    traces = [trace_spans(otlp_receiver, trace_id, 2) for trace_id in trace_ids]
    waits = [
        (store_span(spans), span)
        for spans in traces
        for span in spans
        if span.name == "fault userServicePoolStarvation connection wait"
    ]
    assert len(waits) >= 2, "no span shows the wait for the one connection"
    for store, wait in waits:
        assert wait.parent_span_id == store.span_id, "the wait is not inside the store span"
        assert wait.attributes["feature_flag.key"] == "userServicePoolStarvation"
        assert wait.attributes["feature_flag.result.variant"] == "oneConnection"
        assert store.attributes["db.client.connection.wait_time"] == pytest.approx(
            wait.duration_seconds, abs=0.01
        )

    switch(flags_file, "userServicePoolStarvation", None)
    wait_in_effect(server, "userServicePoolStarvation", "off")
    # The server's own statements (the change feed's polls) still queued for the one connection
    # when the flag went off go through one by one, 150 ms each: count from when they are done.
    before = _settled(long_waits)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: list_users(server, metadata), range(4)))
    assert long_waits() == before, "statements waited for a connection with the pool whole again"


def test_a_memory_leak_grows_to_its_bound_and_is_given_back_when_off(
    start: Callable[[str], ServerProcess], flags_file: Path
) -> None:
    """A variant leaking fast (the repository's leaks 24 MiB a minute): resident memory grows
    by the variant's bound and no further, and falls back once the flag is off."""
    document = json.loads(flags_file.read_text())
    document["flags"]["userServiceMemoryLeak"]["variants"]["fast32MiB"] = {
        "mib_per_minute": 960,
        "max_mib": 32,
    }
    flags_file.write_text(json.dumps(document))
    server = start("a")
    resident = "process_resident_memory_bytes"
    time.sleep(1)
    baseline = server.metric(resident)
    switch(flags_file, "userServiceMemoryLeak", "fast32MiB")
    assert eventually(lambda: server.metric(resident) >= baseline + 30 * MIB, timeout=15), (
        f"resident memory {server.metric(resident) / MIB:.0f} MiB, from {baseline / MIB:.0f} MiB"
    )
    time.sleep(2)  # two more leak steps: the bound holds
    assert server.metric(resident) <= baseline + 40 * MIB
    switch(flags_file, "userServiceMemoryLeak", None)
    assert eventually(lambda: server.metric(resident) <= baseline + 8 * MIB, timeout=10), (
        f"resident memory {server.metric(resident) / MIB:.0f} MiB after off, from {baseline / MIB:.0f} MiB"
    )


def test_a_cpu_hog_holds_the_replica_core_while_on(
    start: Callable[[str], ServerProcess], credentials: DevCredentials, flags_file: Path
) -> None:
    """busy90: the replica's process burns most of a core (~90 % when it has one to itself) doing
    nothing useful, while calls are still answered (later); off, it is idle again."""
    server = start("a")
    metadata = admin(server, credentials)
    switch(flags_file, "userServiceCpuHog", "busy90")
    wait_in_effect(server, "userServiceCpuHog", "busy90")
    # Shares, not a figure: on a machine busy with other work the hog still gets its turns.
    hogging = _cpu_share(server)
    assert hogging >= 0.3, hogging
    list_users(server, metadata)  # answered, between the spins
    switch(flags_file, "userServiceCpuHog", None)
    wait_in_effect(server, "userServiceCpuHog", "off")
    idle = _cpu_share(server)
    assert idle < hogging / 3, (idle, hogging)


def _cpu_share(server: ServerProcess, seconds: float = 2.0) -> float:
    """The share of one core the server's process used over ``seconds``."""
    before = server.metric("process_cpu_seconds_total")
    time.sleep(seconds)
    return (server.metric("process_cpu_seconds_total") - before) / seconds
