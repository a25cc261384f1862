"""Faults on purpose against a server process at production defaults (auth, access log, metrics,
tracing) reading a copy of flags/demo.flagd.json, edited as `make fault` edits it: each fault
strikes what its variant says and nothing else, names its flag in the status and the trace, is
picked up without a restart, and with every flag off nothing is injected."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from devkit.dev_credentials import DevCredentials
from devkit.otlp_receiver import OtlpReceiver
from devkit.processes import CLI, ServerProcess
from loadtest.flags import LOAD_FLAGS
from scripts import faults
from scripts.stack.observe import eventually
from scripts.stack.plan import REPO
from tests.faults.conftest import (
    CALLS,
    NOT_SERVING,
    SERVING,
    admin,
    codes,
    in_effect,
    switch,
    wait_in_effect,
)
from user_service.api.methods import RPC_TABLE, USER_SERVICE
from user_service.client import open_channel
from user_service.config import ClientSettings
from user_service.faults import FLAGS, FlagState, fault_of
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc


def test_with_every_flag_off_nothing_is_injected(
    start: Callable[[str], ServerProcess], credentials: DevCredentials
) -> None:
    server = start("a")
    metadata = admin(server, credentials)
    assert set(codes(server, metadata, "GetUser", 100)) == {grpc.StatusCode.OK}
    assert in_effect(server, "userServiceErrors", "off")
    assert in_effect(server, "userServiceLatency", "off")
    assert server.sample("user_service_fault_flag", flag="userServiceErrors", replica="a") == 1


def test_an_error_fault_fails_its_share_of_one_method_and_stops_when_turned_off(
    start: Callable[[str], ServerProcess], credentials: DevCredentials, flags_file: Path
) -> None:
    """getUserUnavailable10: ~10 % of GetUser calls fail UNAVAILABLE with a message naming the
    flag; ListUsers is untouched; turned on and off on a running server."""
    server = start("a")
    metadata = admin(server, credentials)
    switch(flags_file, "userServiceErrors", "getUserUnavailable10")
    wait_in_effect(server, "userServiceErrors", "getUserUnavailable10")
    found = codes(server, metadata, "GetUser")
    failed = [code for code in found if code != grpc.StatusCode.OK]
    assert set(failed) == {grpc.StatusCode.UNAVAILABLE}
    assert 0.04 * CALLS <= len(failed) <= 0.19 * CALLS, f"{len(failed)} of {CALLS} (10 % expected)"
    assert set(codes(server, metadata, "ListUsers", 100)) == {grpc.StatusCode.OK}
    labels = 'effect="error",flag="userServiceErrors",variant="getUserUnavailable10"'
    assert server.metric(f"user_service_faults_injected_total{{{labels}}}") == len(failed)

    switch(flags_file, "userServiceErrors", None)
    wait_in_effect(server, "userServiceErrors", "off")
    assert set(codes(server, metadata, "GetUser", 200)) == {grpc.StatusCode.OK}


def test_the_status_message_names_the_flag(
    start: Callable[[str], ServerProcess], credentials: DevCredentials, flags_file: Path
) -> None:
    server = start("a")
    metadata = admin(server, credentials)
    switch(flags_file, "userServiceErrors", "everyMethodExhausted20")
    wait_in_effect(server, "userServiceErrors", "everyMethodExhausted20")
    struck: list[grpc.RpcError] = []
    with grpc.insecure_channel(server.target) as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        for _ in range(200):
            try:
                users.ListUsers(user_pb2.ListUsersRequest(page_size=1), metadata=metadata, timeout=10)
            except grpc.RpcError as error:
                struck.append(error)
    assert struck, "no call of 200 was struck at a 20 % ratio"
    assert {error.code() for error in struck} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert all(
        "flag userServiceErrors (variant everyMethodExhausted20)" in (e.details() or "") for e in struck
    )


def test_a_latency_fault_delays_calls_inside_a_span_named_after_its_flag(
    start: Callable[[str], ServerProcess],
    credentials: DevCredentials,
    flags_file: Path,
    otlp_receiver: OtlpReceiver,
) -> None:
    """getUser400ms: every GetUser waits 400 ms; the wait is a child span of the call's server
    span carrying the feature_flag attributes, so the trace says where the time went and why."""
    server = start("a")
    metadata = admin(server, credentials)
    switch(flags_file, "userServiceLatency", "getUser400ms")
    wait_in_effect(server, "userServiceLatency", "getUser400ms")
    trace_id = secrets.token_hex(16)
    traced = (*metadata, ("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"))
    with grpc.insecure_channel(server.target) as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as missing:
            users.GetUser(user_pb2.GetUserRequest(id=10**9), metadata=traced, timeout=10)
        took = time.monotonic() - started
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND, "the call itself still runs after the wait"
    assert took >= 0.4

    def fault_span() -> list[object]:
        return [s for s in otlp_receiver.spans() if s.trace_id == trace_id and s.name.startswith("fault ")]

    assert eventually(fault_span, timeout=10), "no fault span exported"
    spans = [s for s in otlp_receiver.spans() if s.trace_id == trace_id]
    (fault,) = [s for s in spans if s.name == "fault userServiceLatency latency"]
    (server_span,) = [s for s in spans if s.kind == "SERVER"]
    assert fault.parent_span_id == server_span.span_id
    assert fault.attributes["feature_flag.key"] == "userServiceLatency"
    assert fault.attributes["feature_flag.result.variant"] == "getUser400ms"
    assert fault.attributes["feature_flag.provider.name"] == "flagd"


def test_a_fault_aimed_at_one_replica_spares_the_others(
    start: Callable[[str], ServerProcess], credentials: DevCredentials, flags_file: Path
) -> None:
    """flagd targeting on the replica's name: `make fault ... REPLICA=b` strikes b only."""
    a, b = start("a"), start("b")
    switch(flags_file, "userServiceErrors", "everyMethodExhausted20", replica="b")
    wait_in_effect(b, "userServiceErrors", "everyMethodExhausted20")
    assert in_effect(a, "userServiceErrors", "off")
    assert set(codes(a, admin(a, credentials), "ListUsers", 200)) == {grpc.StatusCode.OK}
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes(b, admin(b, credentials), "ListUsers", 200)


def test_a_broken_flag_file_leaves_the_service_serving_without_faults(
    start: Callable[[str], ServerProcess], credentials: DevCredentials, flags_file: Path
) -> None:
    """A half-written or invalid file (not written atomically, say) turns nothing on and
    breaks nothing: the last good snapshot stays, calls keep succeeding."""
    server = start("a")
    metadata = admin(server, credentials)
    flags_file.write_text('{"flags": {"userServiceErrors": ')
    time.sleep(1.5)  # the provider reads the file every 0.5 s
    assert set(codes(server, metadata, "GetUser", 50)) == {grpc.StatusCode.OK}
    server.assert_alive()


def test_every_variant_in_the_repository_file_is_a_valid_fault() -> None:
    """A variant with an unknown code, a delay out of range or a method the service lacks would
    silently do nothing: every variant but `off` must parse to a fault of real methods."""
    methods = {method.name for method in RPC_TABLE.of_service(USER_SERVICE.full_name)}
    document = faults.read(REPO / "flags/demo.flagd.json")
    for key, flag in document["flags"].items():
        assert flag["defaultVariant"] == "off", f"{key} is on in the repository"
        assert "targeting" not in flag, f"{key} is on for some replica in the repository"
        if key in LOAD_FLAGS:
            continue  # the load generator's (tests/load/test_load_flags.py)
        for variant, value in flag["variants"].items():
            fault = fault_of(FlagState(key, variant), value)
            assert (fault is None) == (variant == "off"), f"{key}={variant}: {value}"
            assert fault is None or fault.methods <= methods, f"{key}={variant}: unknown methods"
    assert set(document["flags"]) == {*FLAGS, *LOAD_FLAGS}, "a flag nobody reads"


def test_a_feed_stall_holds_live_events_and_delivers_them_all_in_order_when_off(
    start: Callable[[str], ServerProcess], credentials: DevCredentials, flags_file: Path
) -> None:
    """relayPaused: a write goes on succeeding, but a live subscriber does not see it and the
    relay's published position stays flat; turned off, the subscriber gets it — nothing lost."""
    server = start("a")
    metadata = admin(server, credentials)
    received: list[int] = []
    with grpc.insecure_channel(server.target) as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        stream = users.SubscribeUsers(user_pb2.SubscribeUsersRequest(), metadata=metadata, timeout=60)

        def follow() -> None:
            with contextlib.suppress(grpc.RpcError):  # cancelled at the end of the test
                received.extend(event.event_id for event in stream)

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()

        def create(name: str) -> None:
            user = user_pb2.User(name=name, email=f"{name}@example.com")
            users.CreateUser(user_pb2.CreateUserRequest(user=user), metadata=metadata, timeout=10)

        # A live subscription sees what commits after it is registered: wait for that first.
        assert eventually(lambda: server.metric("user_service_subscribers") == 1, timeout=10)
        create("first")
        assert eventually(lambda: received == [1], timeout=10), received
        switch(flags_file, "userServiceFeedStall", "relayPaused")
        wait_in_effect(server, "userServiceFeedStall", "relayPaused")
        create("second")
        create("third")
        time.sleep(1.5)  # six relay polls
        assert received == [1], "a paused relay published"
        assert server.metric("user_service_feed_published_event_id") == 1
        switch(flags_file, "userServiceFeedStall", None)
        assert eventually(lambda: received == [1, 2, 3], timeout=10), received
        stream.cancel()
        follower.join(timeout=10)


def test_a_replica_not_ready_reports_not_serving_and_still_answers(
    start: Callable[[str], ServerProcess], credentials: DevCredentials, flags_file: Path
) -> None:
    """notServing: health turns NOT_SERVING (health-checked clients leave the replica, as for a
    draining one), calls that still arrive are served; off, it is SERVING again."""
    server = start("a")
    metadata = admin(server, credentials)
    switch(flags_file, "userServiceNotReady", "notServing", replica="a")
    assert eventually(lambda: server.health(USER_SERVICE.full_name) == NOT_SERVING, timeout=10)
    assert server.health() == NOT_SERVING
    assert set(codes(server, metadata, "ListUsers", 20)) == {grpc.StatusCode.OK}
    switch(flags_file, "userServiceNotReady", None)
    assert eventually(lambda: server.health(USER_SERVICE.full_name) == SERVING, timeout=10)
    assert server.health() == SERVING


def test_round_robin_clients_leave_a_replica_that_is_not_ready_and_no_call_fails(
    start: Callable[[str], ServerProcess], credentials: DevCredentials, flags_file: Path
) -> None:
    """The story of notServing: a client balancing over both replicas (as the load generator and
    the CLI do) stops sending calls to the one that turned NOT_SERVING, and none fails."""
    a, b = start("a"), start("b")
    metadata = admin(a, credentials)
    with open_channel(ClientSettings(target=f"ipv4:{a.target},{b.target}")) as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        page = user_pb2.ListUsersRequest(page_size=1)
        for _ in range(200):  # until both replicas took calls: their health checks passed
            if a.started("ListUsers") and b.started("ListUsers"):
                break
            users.ListUsers(page, metadata=metadata, timeout=10)
        assert b.started("ListUsers"), "round robin never reached b"
        switch(flags_file, "userServiceNotReady", "notServing", replica="b")
        assert eventually(lambda: b.health(USER_SERVICE.full_name) == NOT_SERVING, timeout=10)

        def drained() -> bool:
            """Whether a batch of calls left b alone (the client's health watch heard it)."""
            before = b.started("ListUsers")
            for _ in range(10):
                users.ListUsers(page, metadata=metadata, timeout=10)
            return b.started("ListUsers") == before

        assert eventually(drained, timeout=10), "the client kept calling the replica that is not ready"
        before = b.started("ListUsers")
        for _ in range(60):
            users.ListUsers(page, metadata=metadata, timeout=10)  # raises on any failure
        assert b.started("ListUsers") == before, "calls still went to the replica that is not ready"


def test_a_flags_file_that_does_not_exist_stops_the_start_with_its_name(tmp_path: Path) -> None:
    """A typo in USER_SERVICE_FLAGS_FILE is a configuration error, not a silent "no faults"."""
    missing = tmp_path / "flags" / "demo.flagd.jsn"
    started = subprocess.run(
        [CLI, "serve", "--port", "0", "--metrics-port", "0", "--workers", "1"],
        env={
            **os.environ,
            "USER_SERVICE_FLAGS_FILE": str(missing),
            "USER_SERVICE_AUTH_ENABLED": "false",
            "USER_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'users.db'}",
            "OTEL_SDK_DISABLED": "true",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0
    assert "flags_file" in started.stderr


def test_a_fault_aimed_at_one_user_strikes_only_the_calls_that_name_it(
    start: Callable[[str], ServerProcess], credentials: DevCredentials, flags_file: Path
) -> None:
    """oneUserUnavailable (the OpenTelemetry Demo's one-product failure): every GetUser, UpdateUser
    and DeleteUser naming user 1 fails UNAVAILABLE; the same calls for user 2 succeed."""
    server = start("a")
    metadata = admin(server, credentials)
    with grpc.insecure_channel(server.target) as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        for name in ("one", "two"):
            user = user_pb2.User(name=name, email=f"{name}@example.com")
            users.CreateUser(user_pb2.CreateUserRequest(user=user), metadata=metadata, timeout=10)
        switch(flags_file, "userServiceErrors", "oneUserUnavailable")
        wait_in_effect(server, "userServiceErrors", "oneUserUnavailable")
        for _ in range(20):
            with pytest.raises(grpc.RpcError) as struck:
                users.GetUser(user_pb2.GetUserRequest(id=1), metadata=metadata, timeout=10)
            assert struck.value.code() == grpc.StatusCode.UNAVAILABLE
            users.GetUser(user_pb2.GetUserRequest(id=2), metadata=metadata, timeout=10)
        renamed = user_pb2.UpdateUserRequest(user=user_pb2.User(id=1, name="uno"))
        with pytest.raises(grpc.RpcError) as struck:
            users.UpdateUser(renamed, metadata=metadata, timeout=10)
        assert struck.value.code() == grpc.StatusCode.UNAVAILABLE
        users.UpdateUser(
            user_pb2.UpdateUserRequest(user=user_pb2.User(id=2, name="dos")), metadata=metadata, timeout=10
        )
