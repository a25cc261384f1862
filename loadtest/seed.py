"""Makes sure the users the load reads exist: ``python -m loadtest.seed``.

Run before Locust starts (``make load`` does), not inside it: a gRPC channel created in
Locust's parent process before it forks its ``--processes`` would hang the workers.
Idempotent — seeded emails are fixed, so a second run only fills what is missing.
"""

from __future__ import annotations

import grpc

from loadtest.settings import LoadSettings
from user_service.client import bearer, login, open_channel
from user_service.config import ClientSettings
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

_SEED_DOMAIN = "@load.example.com"


def seed_email(n: int) -> str:
    return f"seed-{n}{_SEED_DOMAIN}"


def is_seeded(user: user_pb2.User) -> bool:
    """A seed user: one the load reads and never writes (its writers touch only their own)."""
    return user.email.startswith("seed-") and user.email.endswith(_SEED_DOMAIN)


def seed(client: ClientSettings, load: LoadSettings) -> int:
    """Creates the missing seed users; returns how many exist."""
    with open_channel(client) as channel:
        client_id, secret = load.credentials()
        metadata = bearer(login(channel, client_id, secret, timeout=client.timeout))
        users = user_pb2_grpc.UserServiceStub(channel)
        requests = (
            user_pb2.CreateUserRequest(user=user_pb2.User(name=f"Seed {n}", email=seed_email(n)))
            for n in range(load.seed_users)
        )
        response = users.BatchCreateUsers(requests, metadata=metadata, timeout=max(60.0, client.timeout))
        taken = grpc.StatusCode.ALREADY_EXISTS.value[0]
        failed = [r.error for r in response.results if r.HasField("error") and r.error.code != taken]
        if failed:
            raise SystemExit(f"seeding failed: {failed[0].message}")
        return len(response.results)


if __name__ == "__main__":
    count = seed(ClientSettings(), LoadSettings())
    print(f"seed: {count} users present")
