"""Client credentials: secrets stored as scrypt hashes, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from user_service.auth.roles import Role

_N, _R, _P = 2**14, 8, 1  # scrypt cost: ~50 ms and 16 MiB per check on this machine


def hash_secret(secret: str) -> str:
    """``scrypt$N$r$p$salt$hash``, all that is stored of a client secret."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), _b64(salt), _b64(digest)])


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        candidate = hashlib.scrypt(secret.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(candidate, _unb64(digest))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode())


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    secret_hash: str
    roles: tuple[Role, ...]


class ClientRegistry:
    """The configured clients, from a JSON file:
    ``{"clients": [{"id": "...", "secret_hash": "scrypt$...", "roles": ["writer"]}]}``."""

    def __init__(self, clients: list[Client]) -> None:
        self._clients = {client.id: client for client in clients}
        # An unknown client is checked against this, so that "no such client" and "wrong
        # secret" take the same time and cannot be told apart.
        self._decoy = hash_secret(secrets.token_urlsafe(16))

    @classmethod
    def load(cls, path: Path) -> ClientRegistry:
        document = json.loads(path.read_text())
        return cls(
            [
                Client(entry["id"], entry["secret_hash"], tuple(Role.parse(role) for role in entry["roles"]))
                for entry in document["clients"]
            ]
        )

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        """Blocking (scrypt): call it off the event loop."""
        client = self._clients.get(client_id)
        matches = verify_secret(secret, client.secret_hash if client else self._decoy)
        return client if client is not None and matches else None
