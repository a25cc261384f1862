"""Settings, read once from ``USER_SERVICE_*`` environment variables and CLI flags.

``OTEL_*`` variables are not read here: the OpenTelemetry SDK owns them.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, FilePath, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from user_service.domain.pagination import PageLimits


class ServerSettings(BaseSettings):
    """Everything the server needs to start. Frozen: pass it around, never re-read."""

    model_config = SettingsConfigDict(env_prefix="USER_SERVICE_", frozen=True, extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 or [::] in a container.")
    port: Annotated[int, Field(ge=0, le=65535)] = Field(50051, description="gRPC port; 0 picks a free one.")
    workers: Annotated[int, Field(ge=0, le=256)] = Field(
        0,
        description="Server processes sharing the port (SO_REUSEPORT); 0 = one per core the process"
        " may run on. Containers and pods run 1 and scale by replicas.",
    )
    worker_index: int | None = Field(
        None, description="Set by the supervisor in each worker it starts; never set it yourself."
    )
    database_url: str = Field(
        "sqlite:///data/users.db",
        description="sqlite:///relative/path, sqlite:////absolute/path, or"
        " postgresql://user[:password]@host[:port]/database (libpq URL; query options like sslmode allowed).",
    )
    database_url_file: Path | None = Field(
        None,
        description="File holding the database URL (a secret: it has the password); wins over database_url.",
    )
    database_pool_size: Annotated[int, Field(ge=1, le=1000)] = Field(
        10, description="PostgreSQL: connections each server process keeps at most."
    )
    grace_period: Annotated[float, Field(ge=0)] = Field(
        10.0, description="Seconds in-flight calls get to finish on shutdown."
    )
    drain_delay: Annotated[float, Field(ge=0)] = Field(
        0.0,
        description="Seconds between health turning NOT_SERVING and refusing new calls on shutdown,"
        " so load balancers can move traffic away first.",
    )
    default_page_size: Annotated[int, Field(ge=1)] = Field(50, description="ListUsers page_size when 0.")
    max_page_size: Annotated[int, Field(ge=1)] = Field(1000, description="ListUsers page_size upper clamp.")
    subscriber_buffer: Annotated[int, Field(ge=1)] = Field(
        1024, description="Live events buffered per subscriber before it is cut off."
    )
    max_batch_size: Annotated[int, Field(ge=1)] = Field(
        1000, description="Users in one BatchCreateUsers stream."
    )
    flags_file: FilePath | None = Field(
        None,
        description="Fault flags in flagd's format (flags/demo.flagd.json): faults on purpose, picked up"
        " within a second of an edit; none when unset.",
    )
    replica: str = Field(
        default_factory=socket.gethostname,
        description="This replica's name, which fault flags can target (flagd context attribute"
        " `replica`); the host name by default.",
    )
    feed_poll_interval: Annotated[float, Field(gt=0, le=60)] = Field(
        0.25,
        description="Seconds between the change feed's reads of the outbox when nothing woke it:"
        " how soon subscribers see writes of other processes on SQLite (PostgreSQL notifies at once;"
        " there it only covers lost notifications).",
    )
    event_retention_seconds: Annotated[float, Field(ge=0)] = Field(
        7 * 24 * 3600.0,
        description="How long the outbox keeps events for subscribers resuming with since_event_id;"
        " 0 keeps them forever.",
    )
    max_subscribers: Annotated[int, Field(ge=1)] = Field(
        1000, description="Concurrent SubscribeUsers streams."
    )
    max_subscriptions_per_caller: Annotated[int, Field(ge=1)] = Field(
        100, description="Concurrent SubscribeUsers streams of one caller (token subject, or host)."
    )
    max_message_bytes: Annotated[int, Field(ge=1024)] = Field(
        1024 * 1024, description="Largest request message accepted; larger ones are RESOURCE_EXHAUSTED."
    )
    max_concurrent_rpcs: Annotated[int, Field(ge=1)] = Field(
        2000, description="RPCs in flight (streams included); beyond it calls get RESOURCE_EXHAUSTED."
    )
    max_public_rpcs: Annotated[int, Field(ge=1)] = Field(
        64,
        description="Calls in flight that need no token (reflection, login, health watches);"
        " health checks are never refused.",
    )
    max_concurrent_logins: Annotated[int, Field(ge=1)] = Field(
        2, description="Client secrets checked at once (scrypt: CPU and 16 MiB each)."
    )
    max_streams_per_connection: Annotated[int, Field(ge=1)] = Field(
        2000,
        description="HTTP/2 concurrent streams one connection may open: as high as the RPC budget, so"
        " a busy client queues nothing and is never refused a stream (REFUSED_STREAM); the budget protects.",
    )
    keepalive_seconds: Annotated[float, Field(gt=0)] = Field(
        60.0, description="Ping idle connections this often; drop them if no answer within 20 s."
    )
    min_client_ping_seconds: Annotated[float, Field(gt=0)] = Field(
        10.0, description="Clients pinging more often than this are disconnected (GOAWAY)."
    )
    auth_enabled: bool = Field(
        True, description="Require a Bearer JWT on every call but login/health/reflection."
    )
    auth_clients_file: Path | None = Field(
        None, description="JSON file of clients (id, scrypt secret hash, roles)."
    )
    jwt_algorithm: Literal["HS256", "RS256", "ES256"] = Field(
        "HS256", description="Token signature algorithm."
    )
    jwt_secret_file: Path | None = Field(None, description="HS256 secret (>= 32 bytes).")
    jwt_private_key_file: Path | None = Field(None, description="RS256/ES256 private key (PEM).")
    jwt_key_id: str | None = Field(None, description="`kid` header of issued tokens.")
    jwt_jwks_url: str | None = Field(
        None, description="Verify tokens with an identity provider's keys (RS256/ES256, by `kid`)."
    )
    jwt_issuer: str = Field("user-service", description="`iss` of issued and accepted tokens.")
    jwt_audience: str = Field("user-service", description="`aud` of issued and accepted tokens.")
    token_ttl_seconds: Annotated[int, Field(ge=60)] = Field(900, description="Lifetime of issued tokens.")
    token_leeway_seconds: Annotated[int, Field(ge=0, le=300)] = Field(30, description="Clock skew tolerated.")
    tls_cert_file: Path | None = Field(
        None, description="Server certificate (PEM); with the key, enables TLS."
    )
    tls_key_file: Path | None = Field(None, description="Server private key (PEM).")
    tls_client_ca_file: Path | None = Field(None, description="CA of client certificates; set = mutual TLS.")
    log_level: str = Field("INFO", description="Python logging level.")
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one object per line, with trace ids."
    )
    access_log: Literal["all", "errors_and_slow", "off"] = Field(
        "errors_and_slow",
        description="all: a line per RPC; errors_and_slow: RPCs that did not end OK or took longer"
        " than access_log_slow_ms (true/false mean all/off).",
    )
    access_log_slow_ms: Annotated[float, Field(gt=0)] = Field(
        250.0, description="errors_and_slow logs RPCs that took longer than this too."
    )
    trace_sampling_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        0.1,
        description="Share of the traces this server starts (calls without a sampled caller) that"
        " are recorded; a caller's sampling decision is always followed. OTEL_TRACES_SAMPLER, when"
        " set, replaces this.",
    )
    metrics_enabled: bool = Field(True, description="Record Prometheus metrics and serve /metrics.")
    metrics_host: str = Field("127.0.0.1", description="Interface of the /metrics endpoint.")
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        9464, description="/metrics port; 0 picks one."
    )

    @field_validator("access_log", mode="before")
    @classmethod
    def _access_log_switch(cls, value: object) -> object:
        """The former switch still works: true = every RPC, false = none."""
        if isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false")):
            return "all" if str(value).lower() == "true" else "off"
        return value

    @model_validator(mode="before")
    @classmethod
    def _database_url_from_file(cls, data: Any) -> Any:
        """Reads USER_SERVICE_DATABASE_URL_FILE once, at start-up, like the other secret files."""
        if isinstance(data, dict) and data.get("database_url_file"):
            try:
                url = Path(data["database_url_file"]).read_text().strip()
            except OSError as error:
                raise ValueError(
                    f"database_url_file: {error.strerror}: {data['database_url_file']}"
                ) from error
            data = {**data, "database_url": url}
        return data

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return url

    @property
    def database_kind(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.database_url.startswith("sqlite:///") else "postgresql"

    @property
    def sqlite_path(self) -> Path:
        return Path(self.database_url.removeprefix("sqlite:///"))

    @property
    def page_limits(self) -> PageLimits:
        return PageLimits(default_size=self.default_page_size, max_size=self.max_page_size)

    @model_validator(mode="after")
    def _complete_security_config(self) -> ServerSettings:
        if self.auth_enabled and self.jwt_jwks_url is not None and self.jwt_algorithm == "HS256":
            raise ValueError("JWKS verification needs RS256 or ES256")
        if self.auth_enabled and self.jwt_jwks_url is None:
            if self.auth_clients_file is None:
                raise ValueError("auth is enabled: set USER_SERVICE_AUTH_CLIENTS_FILE (or disable auth)")
            key = self.jwt_secret_file if self.jwt_algorithm == "HS256" else self.jwt_private_key_file
            if key is None:
                raise ValueError(f"auth is enabled: {self.jwt_algorithm} needs its key file")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both USER_SERVICE_TLS_CERT_FILE and USER_SERVICE_TLS_KEY_FILE")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("mutual TLS needs the server's own certificate too")
        return self


class ClientSettings(BaseSettings):
    """Settings of the CLI client subcommands."""

    model_config = SettingsConfigDict(env_prefix="USER_SERVICE_", frozen=True, extra="ignore")

    target: str = Field(
        "localhost:50051",
        description="host:port of the server, or several: ipv4:host:port,host:port or dns:///name:port"
        " (calls are balanced round-robin over the healthy ones).",
    )
    timeout: Annotated[float, Field(gt=0)] = Field(10.0, description="Deadline of each call, in seconds.")
    token: str | None = Field(None, description="Access token sent as `authorization: Bearer`.")
    ca_file: Path | None = Field(None, description="CA that signed the server certificate: connect with TLS.")
    cert_file: Path | None = Field(None, description="Client certificate for mutual TLS.")
    key_file: Path | None = Field(None, description="Client private key for mutual TLS.")
