"""Third-party tools against a server process: grpcurl via reflection, grpc-health-probe, buf."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from devkit.processes import ServerProcess
from tests.conftest import require_tool

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"
RPCS = [
    "GetUser",
    "ListUsers",
    "CreateUser",
    "UpdateUser",
    "DeleteUser",
    "SubscribeUsers",
    "BatchCreateUsers",
    "LookupUsers",
]


def _grpcurl(server: ServerProcess, *args: str, data: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [require_tool("grpcurl"), "-plaintext", "-max-time", "5"]
    if data is not None:
        command += ["-d", data]
    return subprocess.run([*command, server.target, *args], capture_output=True, text=True, timeout=30)


def _objects(output: str) -> list[Any]:
    """grpcurl prints a stream of pretty-printed JSON objects."""
    decoder, objects, rest = json.JSONDecoder(), list[Any](), output.strip()
    while rest:
        value, end = decoder.raw_decode(rest)
        objects.append(value)
        rest = rest[end:].strip()
    return objects


def test_grpcurl_lists_every_service_and_rpc_through_reflection(server_process: ServerProcess) -> None:
    services = _grpcurl(server_process, "list").stdout.split()
    assert {"user.v1.UserService", "grpc.health.v1.Health"} <= set(services)
    methods = _grpcurl(server_process, "list", "user.v1.UserService").stdout.split()
    assert sorted(methods) == sorted(f"user.v1.UserService.{rpc}" for rpc in RPCS)


def test_grpcurl_calls_every_rpc_through_reflection(server_process: ServerProcess) -> None:
    service = "user.v1.UserService"
    created = _objects(
        _grpcurl(
            server_process,
            f"{service}/CreateUser",
            data='{"user": {"name": "Ada", "email": "ada@example.com"}}',
        ).stdout
    )[0]["user"]
    assert isinstance(created, dict)
    assert created["id"] == "1"
    batch = _grpcurl(
        server_process,
        f"{service}/BatchCreateUsers",
        data=" ".join(json.dumps({"user": {"name": n, "email": f"{n}@example.com"}}) for n in ("B", "C")),
    )
    assert _objects(batch.stdout)[0]["created_count"] == 2
    got = _objects(_grpcurl(server_process, f"{service}/GetUser", data='{"id": 1}').stdout)[0]
    assert got["user"] == created
    listed = _objects(_grpcurl(server_process, f"{service}/ListUsers", data='{"page_size": 2}').stdout)[0]
    assert len(listed["users"]) == 2
    assert listed["next_page_token"]
    updated = _grpcurl(server_process, f"{service}/UpdateUser", data='{"user": {"id": 1, "name": "Ada L."}}')
    assert _objects(updated.stdout)[0]["user"]["name"] == "Ada L."
    lookup = _grpcurl(server_process, f"{service}/LookupUsers", data='{"id": 3} {"id": 2}')
    assert [o["user"]["name"] for o in _objects(lookup.stdout)] == ["C", "B"]
    deleted = _grpcurl(server_process, f"{service}/DeleteUser", data='{"id": 2}')
    assert deleted.returncode == 0
    assert _objects(deleted.stdout) == [{}]
    missing = _grpcurl(server_process, f"{service}/GetUser", data='{"id": 2}')
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr
    # The feed never ends by itself: grpcurl's -max-time cuts it after the replay.
    feed = _grpcurl(server_process, f"{service}/SubscribeUsers", data='{"since_event_id": 0}')
    types = [event["type"] for event in _objects(feed.stdout)]
    assert types == ["EVENT_TYPE_CREATED"] * 3 + ["EVENT_TYPE_UPDATED", "EVENT_TYPE_DELETED"]


def test_health_probe_reports_serving(server_process: ServerProcess) -> None:
    probe = require_tool("grpc-health-probe")
    for service in ("", "user.v1.UserService"):
        result = subprocess.run(
            [probe, "-addr", server_process.target, "-service", service],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert "SERVING" in result.stdout + result.stderr


def test_buf_lint_is_clean() -> None:
    result = subprocess.run(
        [require_tool("buf"), "lint"], cwd=PROTO_DIR, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_format_leaves_the_proto_unchanged() -> None:
    result = subprocess.run(
        [require_tool("buf"), "format", "--diff", "--exit-code"],
        cwd=PROTO_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout
