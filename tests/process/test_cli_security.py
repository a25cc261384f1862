"""The CLI against a server process with authentication and mutual TLS on."""

from __future__ import annotations

import json
import os
from pathlib import Path

from devkit.dev_certs import write_dev_certs
from devkit.dev_credentials import write_dev_credentials
from devkit.processes import ServerProcess
from tests.process.conftest import cli


def test_login_then_call_over_mutual_tls(database_url: str, tmp_path: Path) -> None:
    credentials = write_dev_credentials(tmp_path / "credentials")
    certs = write_dev_certs(tmp_path / "certs")
    server = ServerProcess(
        database_url,
        host="localhost",  # the name in the server certificate
        env={
            **credentials.server_env(),
            "USER_SERVICE_TLS_CERT_FILE": str(certs.server_cert),
            "USER_SERVICE_TLS_KEY_FILE": str(certs.server_key),
            "USER_SERVICE_TLS_CLIENT_CA_FILE": str(certs.ca_cert),
        },
    )
    tls = [
        "--ca-file",
        str(certs.ca_cert),
        "--cert-file",
        str(certs.client_cert),
        "--key-file",
        str(certs.client_key),
    ]
    server.start_with(tls_files=(certs.ca_cert, certs.client_cert, certs.client_key))
    try:
        target = ("--target", server.target)
        client_id, secret = credentials.secrets["writer"]
        os.environ["USER_SERVICE_CLIENT_SECRET"] = secret
        try:
            login = json.loads(cli("login", "--client-id", client_id, *target, *tls).stdout)
        finally:
            del os.environ["USER_SERVICE_CLIENT_SECRET"]
        token = login["access_token"]
        created = json.loads(
            cli(
                "create", "--name", "Ada", "--email", "ada@example.com", "--token", token, *target, *tls
            ).stdout
        )
        assert created["user"]["name"] == "Ada"

        denied = cli("delete", created["user"]["id"], "--token", token, *target, *tls, check=False)
        assert json.loads(denied.stderr)["error"]["code"] == "PERMISSION_DENIED"
        anonymous = cli("get", "1", *target, *tls, check=False)
        assert json.loads(anonymous.stderr)["error"]["code"] == "UNAUTHENTICATED"
        plaintext = cli("get", "1", "--token", token, *target, "--timeout", "2", check=False)
        assert json.loads(plaintext.stderr)["error"]["code"] == "UNAVAILABLE"
        assert secret not in server.log()
        assert token not in server.log()
    finally:
        server.stop()
