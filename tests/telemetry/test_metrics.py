"""/metrics after a known sequence of calls: exact go-grpc-middleware series, exemplars, promtool."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from tests.conftest import create_user, eventually, require_tool
from tests.telemetry.conftest import OPENMETRICS, scrape
from user_service.gen.user.v1 import user_pb2
from user_service.server import RunningServer

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub as Stub

SERVICE = "user.v1.UserService"


def _samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in parse_text(exposition)
        for sample in family.samples
    }


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def _known_sequence(stub: Stub) -> None:
    """Every RPC kind, with successes, client mistakes and a cancelled stream."""
    await create_user(stub, "Ada", "ada@example.com")
    await create_user(stub, "Grace", "grace@example.com")
    with pytest.raises(grpc.aio.AioRpcError):
        await create_user(stub, "Ada again", "ada@example.com")
    for bad_id in (404, 0):
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetUser(user_pb2.GetUserRequest(id=bad_id))
    await stub.ListUsers(user_pb2.ListUsersRequest())

    async def batch() -> AsyncIterator[user_pb2.CreateUserRequest]:
        for name in ("carol", "dave", "ada"):
            yield user_pb2.CreateUserRequest(user=user_pb2.User(name=name, email=f"{name}@example.com"))

    await stub.BatchCreateUsers(batch())
    lookup = stub.LookupUsers()
    for user_id in (1, 2):
        await lookup.write(user_pb2.GetUserRequest(id=user_id))
        await lookup.read()
    await lookup.done_writing()
    assert await lookup.read() == grpc.aio.EOF
    await stub.DeleteUser(user_pb2.DeleteUserRequest(id=4))
    # Events 1-5 exist; from 3 the server sends exactly two, then waits for live ones.
    subscription = stub.SubscribeUsers(user_pb2.SubscribeUsersRequest(since_event_id=3))
    events = subscription.__aiter__()
    assert [(await anext(events)).event_id for _ in range(2)] == [4, 5]
    subscription.cancel()


async def test_grpc_series_count_every_rpc_kind_exactly(server: RunningServer, stub: Stub) -> None:
    await _known_sequence(stub)
    expected = {
        # (grpc_type, grpc_method): (started, {grpc_code: handled}, received, sent)
        ("unary", "CreateUser"): (3, {"OK": 2, "AlreadyExists": 1}, 3, 2),
        ("unary", "GetUser"): (2, {"NotFound": 1, "InvalidArgument": 1}, 2, 0),
        ("unary", "ListUsers"): (1, {"OK": 1}, 1, 1),
        ("unary", "DeleteUser"): (1, {"OK": 1}, 1, 1),
        ("unary", "UpdateUser"): (0, {"OK": 0}, 0, 0),
        ("client_stream", "BatchCreateUsers"): (1, {"OK": 1}, 3, 1),
        ("bidi_stream", "LookupUsers"): (1, {"OK": 1}, 2, 2),
        ("server_stream", "SubscribeUsers"): (1, {"Canceled": 1}, 1, 2),
    }

    def handled_all() -> bool:
        return (
            server.telemetry.registry.get_sample_value(
                "grpc_server_handled_total",
                {
                    "grpc_type": "server_stream",
                    "grpc_service": SERVICE,
                    "grpc_method": "SubscribeUsers",
                    "grpc_code": "Canceled",
                },
            )
            == 1
        )

    await eventually(handled_all)
    samples = _samples(await scrape(server.metrics_port))
    for (kind, method), (started, handled, received, sent) in expected.items():
        labels = {"grpc_type": kind, "grpc_service": SERVICE, "grpc_method": method}
        assert _value(samples, "grpc_server_started_total", **labels) == started, method
        for code, count in handled.items():
            assert _value(samples, "grpc_server_handled_total", **labels, grpc_code=code) == count, (
                method,
                code,
            )
        assert _value(samples, "grpc_server_msg_received_total", **labels) == received, method
        assert _value(samples, "grpc_server_msg_sent_total", **labels) == sent, method
        assert _value(samples, "grpc_server_handling_seconds_count", **labels) == sum(handled.values()), (
            method
        )


async def test_service_metrics_follow_the_domain(server: RunningServer, stub: Stub) -> None:
    await _known_sequence(stub)
    await eventually(lambda: server.broker.subscriber_count == 0)
    samples = _samples(await scrape(server.metrics_port))
    assert _value(samples, "user_service_users") == 3
    assert _value(samples, "user_service_events_published_total", type="created") == 4
    assert _value(samples, "user_service_events_published_total", type="deleted") == 1
    assert _value(samples, "user_service_subscribers") == 0
    assert _value(samples, "user_service_subscriber_buffered_events") == 0
    assert _value(samples, "user_service_feed_published_event_id") == 5, "every event published"
    assert _value(samples, "user_service_event_delivery_lag_seconds_count") == 2
    store = {"db_system_name": "sqlite", "db_collection_name": "users"}
    assert (
        _value(samples, "db_client_operation_duration_seconds_count", **store, db_operation_name="INSERT")
        == 6
    )
    assert (
        _value(samples, "db_client_operation_duration_seconds_count", **store, db_operation_name="DELETE")
        == 1
    )
    assert _value(samples, "process_resident_memory_bytes") is not None
    assert _value(samples, "python_gc_collections_total", generation="0") is not None


async def test_subscriptions_ended_by_shutdown_are_counted(server: RunningServer, stub: Stub) -> None:
    call = stub.SubscribeUsers(user_pb2.SubscribeUsersRequest())
    await eventually(lambda: server.broker.subscriber_count == 1)
    assert server.telemetry.registry.get_sample_value("user_service_subscribers") == 1
    await server.shutdown(grace=1)
    with pytest.raises(grpc.aio.AioRpcError):
        await call.read()
    cutoffs = server.telemetry.registry.get_sample_value(
        "user_service_subscriber_cutoffs_total", {"reason": "shutdown"}
    )
    assert cutoffs == 1


async def test_openmetrics_exposition_carries_exemplars_of_sampled_traces(
    server: RunningServer, stub: Stub, spans: InMemorySpanExporter
) -> None:
    await create_user(stub)
    exposition = await scrape(server.metrics_port, accept=OPENMETRICS)
    families = {family.name: family for family in parse_openmetrics(exposition)}
    buckets = [
        sample
        for sample in families["grpc_server_handling_seconds"].samples
        if sample.labels.get("grpc_method") == "CreateUser" and sample.exemplar is not None
    ]
    assert buckets, "a sampled CreateUser observation must carry an exemplar"
    server_span = next(s for s in spans.get_finished_spans() if s.name == "/user.v1.UserService/CreateUser")
    assert server_span.context is not None
    exemplar = buckets[0].exemplar
    assert exemplar is not None
    assert exemplar.labels["trace_id"] == format(server_span.context.trace_id, "032x")
    assert exemplar.labels["span_id"] == format(server_span.context.span_id, "016x")


async def test_classic_text_exposition_has_no_exemplars_and_passes_promtool(
    server: RunningServer, stub: Stub
) -> None:
    await _known_sequence(stub)
    exposition = await scrape(server.metrics_port)
    assert "# {" not in exposition
    assert "trace_id" not in exposition
    result = await asyncio.to_thread(
        subprocess.run,
        [require_tool("promtool"), "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


async def test_label_values_never_carry_ids_or_user_data(server: RunningServer, stub: Stub) -> None:
    await _known_sequence(stub)
    label_values = {value for _, labels in _samples(await scrape(server.metrics_port)) for _, value in labels}
    for marker in ("ada@example.com", "Ada", "grace@example.com", "404"):
        assert marker not in label_values, marker


@pytest.mark.parametrize("when", ["before any message", "mid-stream"])
async def test_cancelled_client_streams_are_counted_as_canceled(
    server: RunningServer, stub: Stub, when: str
) -> None:
    """grpc reports a cancelled read like the end of the request stream; the call must still
    be recorded as Canceled, not as an OK that answered nobody."""
    rounds = 20
    user = await create_user(stub)
    for n in range(rounds):
        lookup = stub.LookupUsers()
        batch = stub.BatchCreateUsers()
        await asyncio.gather(lookup.wait_for_connection(), batch.wait_for_connection())
        if when == "mid-stream":
            await lookup.write(user_pb2.GetUserRequest(id=user.id))
            await lookup.read()
            await batch.write(
                user_pb2.CreateUserRequest(user=user_pb2.User(name="B", email=f"b{n}@example.com"))
            )
        lookup.cancel()
        batch.cancel()

    def handled(kind: str, method: str, code: str) -> float | None:
        labels = {"grpc_type": kind, "grpc_service": SERVICE, "grpc_method": method, "grpc_code": code}
        return server.telemetry.registry.get_sample_value("grpc_server_handled_total", labels)

    def settled() -> bool:
        lookups = sum(handled("bidi_stream", "LookupUsers", code) or 0 for code in ("OK", "Canceled"))
        batches = sum(handled("client_stream", "BatchCreateUsers", code) or 0 for code in ("OK", "Canceled"))
        return lookups == batches == rounds

    await eventually(settled)
    assert handled("bidi_stream", "LookupUsers", "Canceled") == rounds
    assert handled("client_stream", "BatchCreateUsers", "Canceled") == rounds
