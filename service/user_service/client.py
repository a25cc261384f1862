"""What every client of this service (the CLI, the load generator, the stack's probes) does
alike: open a channel — TLS as configured, client-side load balancing — log in, and carry the
token as ``authorization: Bearer`` metadata.

A target may name one server (``host:port``) or several: ``ipv4:10.0.0.1:50051,10.0.0.2:50051``,
or ``dns:///users.internal:50051`` (every address the name resolves to — a Kubernetes headless
Service). Each channel balances its calls over all of them with gRPC's own ``round_robin``
policy — one connection per address, calls spread call by call — and health-checks each
address: a replica that reports NOT_SERVING for ``user.v1.UserService`` (as a draining one does
from its first moment of shutdown) stops receiving new calls at once, and takes them again when
it reports SERVING. No proxy is involved: gRPC's own balancer does it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc

from user_service.api.methods import USER_SERVICE
from user_service.config import ClientSettings
from user_service.gen.auth.v1 import auth_pb2, auth_pb2_grpc

Metadata = tuple[tuple[str, str], ...]
SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": USER_SERVICE.full_name},
    }
)


def channel_options(*, dedicated: bool = False, fixed_window: bool = False) -> list[tuple[str, Any]]:
    """``dedicated``: connections of its own (a local subchannel pool), not shared with the
    process's other channels to the same addresses. ``fixed_window``: each stream's receive
    window is a fixed 16 KiB instead of growing with BDP probing — for held subscriptions, so that
    a reader that falls behind leaves its backlog on the server, which bounds it and cuts the
    reader off — and the reader learns of it after ~160 more events instead of grpc's default
    64 KiB (~650). (Measured with the load generator's slow readers: with probing, a subscriber
    11,000 events behind — about a MB in its window — had not been cut off after 20 s.)"""
    options: list[tuple[str, Any]] = [("grpc.service_config", SERVICE_CONFIG)]
    if dedicated:
        options.append(("grpc.use_local_subchannel_pool", 1))
    if fixed_window:
        options += [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16 * 1024)]
    return options


def channel_credentials(settings: ClientSettings) -> grpc.ChannelCredentials | None:
    """TLS when a CA is given; mutual TLS when a client certificate is given too."""
    if settings.ca_file is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=settings.ca_file.read_bytes(),
        private_key=settings.key_file.read_bytes() if settings.key_file else None,
        certificate_chain=settings.cert_file.read_bytes() if settings.cert_file else None,
    )


def open_channel(
    settings: ClientSettings, *, dedicated: bool = False, fixed_window: bool = False
) -> grpc.Channel:
    """A blocking channel to ``settings.target``: round robin over its addresses, health-checked."""
    options = channel_options(dedicated=dedicated, fixed_window=fixed_window)
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.insecure_channel(settings.target, options=options)
    return grpc.secure_channel(settings.target, credentials, options=options)


def open_aio_channel(
    settings: ClientSettings,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    *,
    dedicated: bool = False,
    fixed_window: bool = False,
) -> grpc.aio.Channel:
    """The same as ``open_channel``, for asyncio clients."""
    options = channel_options(dedicated=dedicated, fixed_window=fixed_window)
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.aio.insecure_channel(settings.target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(settings.target, credentials, options=options, interceptors=interceptors)


def login(channel: grpc.Channel, client_id: str, client_secret: str, *, timeout: float = 10.0) -> str:
    """An access token for the client (the AuthService's Login)."""
    response = auth_pb2_grpc.AuthServiceStub(channel).Login(
        auth_pb2.LoginRequest(client_id=client_id, client_secret=client_secret), timeout=timeout
    )
    return str(response.access_token)


def bearer(token: str | None) -> Metadata:
    """The call metadata that carries ``token`` (none without one)."""
    return (("authorization", f"Bearer {token}"),) if token else ()
