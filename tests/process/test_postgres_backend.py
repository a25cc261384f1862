"""The server at its production defaults (auth, metrics, tracing, access log) on PostgreSQL:
every RPC kind works, SQL statements are traced without their values, replicas share the
data, and a database that goes away is UNAVAILABLE, not INTERNAL."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from devkit.dev_credentials import DevCredentials, write_dev_credentials
from devkit.otlp_receiver import OtlpReceiver
from devkit.postgres import PostgresCluster
from devkit.processes import ServerProcess
from scripts.stack.probes import login
from tests.process.conftest import cli
from tests.process.test_trace_export import _child, _trace_of
from user_service.client import bearer
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.listening import free_port


@pytest.fixture
def credentials(tmp_path: Path) -> DevCredentials:
    return write_dev_credentials(tmp_path / "credentials")


def _server(url: str, credentials: DevCredentials) -> ServerProcess:
    return ServerProcess(url, env=credentials.server_env()).start()


def _token(server: ServerProcess, credentials: DevCredentials) -> str:
    return login(server.target, *credentials.secrets["admin"])


def test_every_rpc_kind_at_production_defaults(postgres_url: str, credentials: DevCredentials) -> None:
    server = _server(postgres_url, credentials)
    try:
        metadata = bearer(_token(server, credentials))
        with grpc.insecure_channel(server.target) as channel:
            stub = user_pb2_grpc.UserServiceStub(channel)
            created = stub.CreateUser(
                user_pb2.CreateUserRequest(user=user_pb2.User(name="Ada", email="ada@example.com")),
                metadata=metadata,
            ).user
            batch = stub.BatchCreateUsers(
                iter(
                    user_pb2.CreateUserRequest(user=user_pb2.User(name=f"U{i}", email=f"u{i}@example.com"))
                    for i in range(3)
                ),
                metadata=metadata,
            )
            assert batch.created_count == 3
            looked_up = stub.LookupUsers(
                iter([user_pb2.GetUserRequest(id=created.id), user_pb2.GetUserRequest(id=created.id + 1)]),
                metadata=metadata,
            )
            assert [response.user.name for response in looked_up] == ["Ada", "U0"]
            updated = stub.UpdateUser(
                user_pb2.UpdateUserRequest(
                    user=user_pb2.User(id=created.id, name="Ada L.", etag=created.etag),
                    update_mask=FieldMask(paths=["name"]),
                ),
                metadata=metadata,
            ).user
            assert (updated.name, updated.etag) == ("Ada L.", "2")
            stub.DeleteUser(user_pb2.DeleteUserRequest(id=created.id), metadata=metadata)
            assert [u.name for u in stub.ListUsers(user_pb2.ListUsersRequest(), metadata=metadata).users] == [
                "U0",
                "U1",
                "U2",
            ]
            replay = stub.SubscribeUsers(user_pb2.SubscribeUsersRequest(since_event_id=0), metadata=metadata)
            events = [next(replay) for _ in range(6)]
            replay.cancel()
            assert [e.event_id for e in events] == [1, 2, 3, 4, 5, 6], "the outbox, in commit order"
            with pytest.raises(grpc.RpcError) as taken:
                stub.CreateUser(
                    user_pb2.CreateUserRequest(user=user_pb2.User(name="X", email="u0@example.com")),
                    metadata=metadata,
                )
            assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
        server.assert_alive()
    finally:
        server.stop()


def test_sql_statements_are_spans_below_the_store_span_without_values(
    postgres_url: str, credentials: DevCredentials, otlp_receiver: OtlpReceiver
) -> None:
    server = _server(postgres_url, credentials)
    try:
        token = _token(server, credentials)
        otlp_receiver.clear()
        cli(
            "create",
            "--name",
            "Ada",
            "--email",
            "ada@example.com",
            "--token",
            token,
            "--target",
            server.target,
        )
        trace = _trace_of(otlp_receiver, "user-service-cli create", expected_spans=10)
        server_span = next(s for s in trace if s.kind == "SERVER")
        insert = _child(trace, server_span, "INSERT users")
        assert insert.attributes["db.system.name"] == "postgresql"
        statements = [s for s in trace if s.parent_span_id == insert.span_id]
        texts = [str(s.attributes.get("db.statement", s.attributes.get("db.query.text"))) for s in statements]
        assert any(text.startswith("INSERT INTO users") and "$1" in text for text in texts), texts
        assert any("pg_advisory_xact_lock" in text for text in texts), "the outbox lock is visible"
        for span in statements:
            assert span.attributes.get("db.system", span.attributes.get("db.system.name")) == "postgresql"
            assert "ada@example.com" not in json.dumps(span.attributes), "no statement values"
    finally:
        server.stop()


def test_replicas_on_one_database_serve_the_same_users(
    postgres_url: str, credentials: DevCredentials
) -> None:
    first, second = _server(postgres_url, credentials), _server(postgres_url, credentials)
    try:
        token = _token(first, credentials)
        target = ("--token", token, "--target")
        created = json.loads(
            cli("create", "--name", "Ada", "--email", "ada@example.com", *target, first.target).stdout
        )
        fetched = json.loads(cli("get", created["user"]["id"], *target, second.target).stdout)
        assert fetched == created
    finally:
        first.stop()
        second.stop()


def test_a_database_that_goes_away_is_unavailable_until_it_is_back(
    postgres_cluster: PostgresCluster, credentials: DevCredentials
) -> None:
    own = PostgresCluster(postgres_cluster.bindir, free_port()).start()
    server = _server(own.url, credentials)
    try:
        token = _token(server, credentials)
        target = ("--token", token, "--target", server.target)
        cli("create", "--name", "Ada", "--email", "ada@example.com", *target)
        own.stop(keep_data=True)
        for command in (("get", "1"), ("create", "--name", "B", "--email", "b@example.com"), ("list",)):
            failed = cli(*command, *target, check=False)
            error = json.loads(failed.stderr)["error"]
            assert error["code"] == "UNAVAILABLE", (command, error)
            assert "the database is unavailable" in error["message"]
        server.assert_alive()
        own.start()
        assert json.loads(cli("get", "1", *target).stdout)["user"]["name"] == "Ada", "the pool reconnects"
        cli("create", "--name", "B", "--email", "b@example.com", *target)
    finally:
        server.stop()
        own.stop()
