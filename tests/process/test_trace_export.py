"""A CLI call against a server process is one trace, exported by both over real OTLP — and the
server's log lines about the call are OTLP log records of that trace."""

from __future__ import annotations

import time

import pytest

from devkit.otlp_receiver import OtlpReceiver, ReceivedSpan
from devkit.processes import ServerProcess
from tests.process.conftest import cli


def _trace_of(
    receiver: OtlpReceiver, root_name: str, expected_spans: int, within: float = 10
) -> list[ReceivedSpan]:
    give_up = time.monotonic() + within
    while True:
        spans = receiver.spans()
        root = next((s for s in spans if s.name == root_name), None)
        trace = [s for s in spans if root is not None and s.trace_id == root.trace_id]
        if len(trace) >= expected_spans or time.monotonic() > give_up:
            return trace
        time.sleep(0.05)


def _child(trace: list[ReceivedSpan], parent: ReceivedSpan, name: str) -> ReceivedSpan:
    children = [s for s in trace if s.parent_span_id == parent.span_id and s.name == name]
    assert len(children) == 1, (
        f"{name!r} under {parent.name!r}: {[(s.name, s.parent_span_id) for s in trace]}"
    )
    return children[0]


def test_cli_span_is_the_parent_of_server_and_store_spans(
    server_process: ServerProcess, otlp_receiver: OtlpReceiver
) -> None:
    otlp_receiver.clear()
    cli("create", "--name", "Ada", "--email", "ada@example.com", "--target", server_process.target)
    trace = _trace_of(otlp_receiver, "user-service-cli create", expected_spans=5)
    root = next(s for s in trace if s.parent_span_id == "")
    assert (root.service, root.kind, root.name) == ("user-service-cli", "INTERNAL", "user-service-cli create")
    client = _child(trace, root, "/user.v1.UserService/CreateUser")
    assert (client.service, client.kind) == ("user-service-cli", "CLIENT")
    server = _child(trace, client, "/user.v1.UserService/CreateUser")
    assert (server.service, server.kind) == ("user-service", "SERVER")
    insert = _child(trace, server, "INSERT users")
    assert (insert.kind, insert.attributes["db.system.name"]) == ("CLIENT", "sqlite")
    assert _child(trace, server, "user_events publish").kind == "PRODUCER"
    resource = server.resource
    assert resource["service.name"] == "user-service"
    assert resource["service.version"]
    assert resource["service.instance.id"]
    assert resource["deployment.environment"] == "development"


def test_a_stream_the_cli_cancels_still_exports_its_client_span(
    server_process: ServerProcess, otlp_receiver: OtlpReceiver
) -> None:
    """`subscribe --limit` cancels its stream; the tracing interceptor ends the CLIENT span only
    when its response generator is closed — which must happen before the CLI flushes its spans."""
    cli("create", "--name", "Ada", "--email", "ada@example.com", "--target", server_process.target)
    otlp_receiver.clear()
    cli("subscribe", "--since", "0", "--limit", "1", "--target", server_process.target)
    trace = _trace_of(otlp_receiver, "user-service-cli subscribe", expected_spans=3)
    root = next(s for s in trace if s.parent_span_id == "")
    assert root.name == "user-service-cli subscribe"
    client = _child(trace, root, "/user.v1.UserService/SubscribeUsers")
    assert (client.service, client.kind) == ("user-service-cli", "CLIENT")
    server = _child(trace, client, "/user.v1.UserService/SubscribeUsers")
    assert (server.service, server.kind) == ("user-service", "SERVER")


def test_standard_otel_variables_configure_resource_and_sampling(
    database_url: str, otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "users-eu")
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging,deployment.environment.name=staging"
    )
    server = ServerProcess(database_url).start()
    try:
        otlp_receiver.clear()
        cli("create", "--name", "Ada", "--email", "ada@example.com", "--target", server.target)
        spans = _trace_of(otlp_receiver, "user-service-cli create", expected_spans=5)
        server_span = next(s for s in spans if s.kind == "SERVER")
        assert server_span.resource["service.name"] == "users-eu"
        assert server_span.resource["deployment.environment"] == "staging"

        otlp_receiver.clear()
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
        cli("get", "1", "--target", server.target)  # the CLI samples nothing; the server follows its parent
        time.sleep(1)
        assert [
            s.name for s in otlp_receiver.spans() if "GetUser" in s.name or s.name == "SELECT users"
        ] == []
    finally:
        server.stop()


def test_a_failed_calls_access_line_is_exported_as_a_log_record_of_its_trace(
    server_process: ServerProcess, otlp_receiver: OtlpReceiver
) -> None:
    """The server process (its own process, logging as configured by default) sends the line it
    writes for a failed call over OTLP: in the CLI's trace, from the server span, with the line's
    fields as attributes and the resource of the server's spans."""
    otlp_receiver.clear()
    cli("get", "999999", "--target", server_process.target, check=False)
    trace = _trace_of(otlp_receiver, "user-service-cli get", expected_spans=3)
    server = next(s for s in trace if s.kind == "SERVER")
    give_up = time.monotonic() + 10
    while not (records := [r for r in otlp_receiver.logs() if r.trace_id == server.trace_id]):
        assert time.monotonic() < give_up, f"no log record of trace {server.trace_id}: {otlp_receiver.logs()}"
        time.sleep(0.05)
    (record,) = records
    assert (record.span_id, record.sampled) == (server.span_id, True)
    assert (record.body, record.severity_text) == ("user.v1.UserService/GetUser NotFound", "INFO")
    assert (record.attributes["rpc_method"], record.attributes["grpc_code"]) == ("GetUser", "NotFound")
    assert "trace_id" not in record.attributes, "the record's own trace context, not an attribute"
    assert record.resource == server.resource
