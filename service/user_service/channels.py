"""How clients of this service connect: TLS as configured, and client-side load balancing.

A target may name one server (``host:port``) or several: ``ipv4:10.0.0.1:50051,10.0.0.2:50051``,
or ``dns:///users.internal:50051`` (every address the name resolves to — a Kubernetes headless
Service). Each channel balances its calls over all of them with gRPC's own ``round_robin``
policy — one connection per address, calls spread call by call — and health-checks each
address: a replica that reports NOT_SERVING for ``user.v1.UserService`` (as a draining one does
from its first moment of shutdown) stops receiving new calls at once, and takes them again when
it reports SERVING. No proxy is involved; this is the seed's section 8, done by gRPC itself.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from user_service.config import ClientSettings

HEALTH_CHECKED_SERVICE = "user.v1.UserService"
SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": HEALTH_CHECKED_SERVICE},
    }
)


def channel_options(*, dedicated: bool = False) -> list[tuple[str, Any]]:
    """``dedicated``: connections of its own (a local subchannel pool), not shared with the
    process's other channels to the same addresses."""
    options: list[tuple[str, Any]] = [("grpc.service_config", SERVICE_CONFIG)]
    if dedicated:
        options.append(("grpc.use_local_subchannel_pool", 1))
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
