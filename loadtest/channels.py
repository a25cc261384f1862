"""Channels to the service as the CLI settings describe them (plain grpc: no Locust here)."""

from __future__ import annotations

import grpc

from user_service.channels import channel_credentials, channel_options
from user_service.config import ClientSettings


def open_channel(settings: ClientSettings, *, dedicated: bool = False) -> grpc.Channel:
    """Round-robin over every address of the target, health-checked (``user_service.channels``);
    ``dedicated``: connections of its own, not shared with other channels."""
    options = channel_options(dedicated=dedicated)
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.insecure_channel(settings.target, options=options)
    return grpc.secure_channel(settings.target, credentials, options=options)
