"""Development credentials, generated (never committed): an HS256 secret and three clients.

    python -m devkit.dev_credentials .dev/credentials

writes ``jwt.secret``, ``clients.json`` (scrypt hashes, what the server reads),
``client-secrets.json`` (the plaintext secrets, what a developer or the demo logs in with), and
for the compose stack's PostgreSQL ``postgres.password`` and ``database.url`` (the service's
connection URL, password included).
"""

from __future__ import annotations

import argparse
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from user_service.auth.credentials import hash_secret

ROLES = ("reader", "writer", "admin")
# The compose stack's database (docker-compose.yml: service postgres, user and database below).
COMPOSE_DATABASE = "postgresql://user_service:{password}@postgres:5432/users"


@dataclass(frozen=True)
class DevCredentials:
    jwt_secret_file: Path
    clients_file: Path
    secrets: dict[str, tuple[str, str]]  # role -> (client id, secret)

    def client_env(self, role: str) -> dict[str, str]:
        """The environment a client (CLI, load generator) logs in with as ``role``."""
        client_id, secret = self.secrets[role]
        return {"USER_SERVICE_CLIENT_ID": client_id, "USER_SERVICE_CLIENT_SECRET": secret}

    def server_env(self) -> dict[str, str]:
        return {
            "USER_SERVICE_AUTH_ENABLED": "true",
            "USER_SERVICE_JWT_SECRET_FILE": str(self.jwt_secret_file),
            "USER_SERVICE_AUTH_CLIENTS_FILE": str(self.clients_file),
        }


def write_dev_credentials(directory: Path) -> DevCredentials:
    """The directory is its owner's alone (0700); the files in it are readable by all (0644)
    because compose bind-mounts them as secrets with their host mode into containers that run
    as another uid (docker-compose.yml). Only the owner can reach them through the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    jwt_secret_file = directory / "jwt.secret"
    jwt_secret_file.write_text(secrets.token_hex(32))
    plain = {role: (f"dev-{role}", secrets.token_urlsafe(24)) for role in ROLES}
    clients = [
        {"id": cid, "secret_hash": hash_secret(secret), "roles": [role]}
        for role, (cid, secret) in plain.items()
    ]
    clients_file = directory / "clients.json"
    clients_file.write_text(json.dumps({"clients": clients}, indent=2))
    secrets_file = directory / "client-secrets.json"
    secrets_file.write_text(
        json.dumps({role: {"client_id": c, "client_secret": s} for role, (c, s) in plain.items()}, indent=2)
    )
    for file in (jwt_secret_file, clients_file, secrets_file):
        file.chmod(0o644)
    write_database_credentials(directory)
    return DevCredentials(jwt_secret_file, clients_file, plain)


def write_database_credentials(directory: Path) -> None:
    """A fresh PostgreSQL password and the URL the service connects with (0644, as above)."""
    password = secrets.token_urlsafe(24)
    for name, text in (
        ("postgres.password", password),
        ("database.url", COMPOSE_DATABASE.format(password=password)),
    ):
        (directory / name).write_text(text)
        (directory / name).chmod(0o644)


def ensure_dev_credentials(directory: Path) -> DevCredentials:
    """The credentials in ``directory``, generated first if it has none (``make up`` keeps the
    ones a developer already logs in with)."""
    secrets_file = directory / "client-secrets.json"
    if not secrets_file.exists():
        return write_dev_credentials(directory)
    if not (directory / "database.url").exists():  # credentials made before the stack had PostgreSQL
        write_database_credentials(directory)
    saved = json.loads(secrets_file.read_text())
    plain = {role: (entry["client_id"], entry["client_secret"]) for role, entry in saved.items()}
    return DevCredentials(directory / "jwt.secret", directory / "clients.json", plain)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path)
    credentials = write_dev_credentials(parser.parse_args().directory)
    print(
        f"wrote {credentials.clients_file} and {credentials.jwt_secret_file}; secrets in client-secrets.json"
    )


if __name__ == "__main__":
    main()
