"""The user-service CLI against a server process: every RPC's walkthrough, errors, the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from devkit.processes import ServerProcess
from tests.process.conftest import cli

REPO = Path(__file__).resolve().parents[2]


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_seed_walkthrough_create_get_list_update_delete(server_process: ServerProcess) -> None:
    target = ("--target", server_process.target)
    created = _json(cli("create", "--name", "Ada", "--email", "ada@example.com", *target))["user"]
    assert isinstance(created, dict)
    user_id = created["id"]
    assert _json(cli("get", user_id, *target))["user"] == created
    assert _json(cli("list", "--all", *target))["users"] == [created]
    updated = _json(cli("update", user_id, "--name", "Ada L.", "--etag", created["etag"], *target))["user"]
    assert isinstance(updated, dict)
    assert (updated["name"], updated["email"]) == ("Ada L.", "ada@example.com")
    assert _json(cli("delete", user_id, *target)) == {}
    missing = cli("get", user_id, *target, check=False)
    assert missing.returncode == 1
    assert json.loads(missing.stderr)["error"]["code"] == "NOT_FOUND"


def test_streaming_commands(server_process: ServerProcess) -> None:
    target = ("--target", server_process.target)
    batch = subprocess.run(
        [sys.executable, "-m", "user_service", "batch-create", *target],
        input='{"name": "A", "email": "a@example.com"}\n{"name": "B", "email": "b@example.com"}\n',
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert _json(batch)["created_count"] == 2
    looked_up = cli("lookup", "2", "1", *target).stdout.splitlines()
    assert [json.loads(line)["user"]["name"] for line in looked_up] == ["B", "A"]
    events = cli("subscribe", "--since", "0", "--limit", "2", *target).stdout.splitlines()
    assert [json.loads(line)["event_id"] for line in events] == ["1", "2"]


def test_invalid_input_is_reported_as_json_with_field_violations(server_process: ServerProcess) -> None:
    result = cli("create", "--name", "", "--email", "nope", "--target", server_process.target, check=False)
    assert result.returncode == 1
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert {v["field"] for v in error["field_violations"]} == {"user.name", "user.email"}


def test_unreachable_server_fails_within_the_deadline() -> None:
    result = cli("get", "1", "--target", "127.0.0.1:9", "--timeout", "0.5", check=False)
    assert result.returncode == 1
    assert json.loads(result.stderr)["error"]["code"] in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
