"""What a load run needs, read once from the environment.

The connection (target, TLS files, deadline) comes from the CLI's ``USER_SERVICE_*``
settings, so ``make load`` reaches whatever the CLI reaches; the credentials are the CLI's
too (``USER_SERVICE_CLIENT_ID`` / ``_SECRET``), defaulting to the development admin that
``make credentials`` writes. Everything about the load itself is ``LOAD_*``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, FilePath
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRETS = Path(".dev/credentials/client-secrets.json")


class LoadSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOAD_", frozen=True, extra="ignore")

    client_id: str | None = Field(
        None, validation_alias=AliasChoices("USER_SERVICE_CLIENT_ID", "LOAD_CLIENT_ID")
    )
    client_secret: str | None = Field(
        None, validation_alias=AliasChoices("USER_SERVICE_CLIENT_SECRET", "LOAD_CLIENT_SECRET")
    )
    mix: str = Field(
        "get=60,list=10,walk=4,lookup=8,create=6,update=6,delete=2,batch=4",
        description="Relative weights of the CRUD user's tasks (name=weight, comma separated).",
    )
    user_rps: Annotated[float, Field(gt=0)] = Field(
        10.0, description="Calls per second each CRUD user makes (loadtest.pacing)."
    )
    pacing: Literal["phased", "locust"] = Field(
        "phased",
        description="phased: each user at a phase of its own (loadtest.pacing); locust: Locust's"
        " constant_throughput, whose users call in step — for the fidelity benchmark.",
    )
    subscribers: Annotated[int, Field(ge=0)] = Field(
        4, description="Users (out of the run's USERS) that each hold a SubscribeUsers stream open."
    )
    seed_users: Annotated[int, Field(ge=0)] = Field(
        200, description="Users `loadtest.seed` makes sure exist."
    )
    batch_size: Annotated[int, Field(ge=1, le=1000)] = Field(
        10, description="Users per BatchCreateUsers stream."
    )
    lookup_size: Annotated[int, Field(ge=1)] = Field(5, description="Ids per LookupUsers stream.")
    walk_pages: Annotated[int, Field(ge=1)] = Field(5, description="ListUsers pages per pagination walk.")
    flags_file: FilePath | None = Field(
        None,
        description="The flag file whose load generator flags to follow (slow consumers, traffic"
        " spike; loadtest/flags.py): the stack's flags/demo.flagd.json. None: no load faults.",
    )
    renew_before_seconds: Annotated[float, Field(ge=0)] = Field(
        60.0, description="Log in again this long before the access token expires."
    )

    def credentials(self) -> tuple[str, str]:
        """The configured client, else the development admin (``make credentials``)."""
        if self.client_id and self.client_secret:
            return self.client_id, self.client_secret
        if not DEV_SECRETS.exists():
            raise SystemExit(
                "no credentials: set USER_SERVICE_CLIENT_ID and USER_SERVICE_CLIENT_SECRET,"
                f" or run `make credentials` to write {DEV_SECRETS}"
            )
        admin = json.loads(DEV_SECRETS.read_text())["admin"]
        return str(admin["client_id"]), str(admin["client_secret"])

    def task_weights(self) -> dict[str, int]:
        weights: dict[str, int] = {}
        for item in self.mix.split(","):
            name, _, weight = item.strip().partition("=")
            weights[name] = int(weight)
        return weights
