"""Channels to the service as the CLI settings describe them (plain grpc: no Locust here)."""

from __future__ import annotations

import grpc

from user_service.config import ClientSettings


def open_channel(settings: ClientSettings, *, dedicated: bool = False) -> grpc.Channel:
    """TLS when a CA is given, mutual TLS with a client certificate. ``dedicated``: a
    connection of its own (a local subchannel pool), not shared with other channels."""
    options = [("grpc.use_local_subchannel_pool", 1)] if dedicated else []
    if settings.ca_file is None:
        return grpc.insecure_channel(settings.target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=settings.ca_file.read_bytes(),
        private_key=settings.key_file.read_bytes() if settings.key_file else None,
        certificate_chain=settings.cert_file.read_bytes() if settings.cert_file else None,
    )
    return grpc.secure_channel(settings.target, credentials, options=options)
