"""Calls into the running stack that the demo and the tests both make: a login, and calls
whose trace id the caller chose (so it can then look for exactly that trace in Jaeger, and its
log lines in VictoriaLogs)."""

from __future__ import annotations

import secrets

import grpc

from user_service import client
from user_service.client import open_channel
from user_service.config import ClientSettings
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc


def login(target: str, client_id: str, client_secret: str) -> str:
    """An access token from the service at ``target`` (every replica, if it lists several)."""
    with open_channel(ClientSettings(target=target)) as channel:
        return client.login(channel, client_id, client_secret)


def traced_call(target: str, token: str) -> str:
    """One ListUsers call carrying a sampled W3C ``traceparent`` with a fresh trace id, which
    the service continues; returns that id."""
    trace_id, metadata = _traced(token)
    with grpc.insecure_channel(target) as channel:
        user_pb2_grpc.UserServiceStub(channel).ListUsers(
            user_pb2.ListUsersRequest(page_size=1), metadata=metadata, timeout=10
        )
    return trace_id


def failing_call(target: str, token: str, *, sampled: bool = True) -> str:
    """One GetUser of a user that does not exist (NOT_FOUND: the access log writes a line for
    it), carrying a ``traceparent`` with a fresh trace id, ``sampled`` or not; returns that id."""
    trace_id, metadata = _traced(token, sampled)
    with grpc.insecure_channel(target) as channel:
        try:
            user_pb2_grpc.UserServiceStub(channel).GetUser(
                user_pb2.GetUserRequest(id=2**62), metadata=metadata, timeout=10
            )
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
        else:
            raise RuntimeError(f"user {2**62} exists: the probe needs a missing one")
    return trace_id


def traced_subscription(target: str, token: str, events: int = 3) -> str:
    """A SubscribeUsers stream, sampled like ``traced_call``, that replays ``events`` events
    and is then cancelled (its server span ends with the stream); returns the trace id."""
    trace_id, metadata = _traced(token)
    with grpc.insecure_channel(target) as channel:
        stream = user_pb2_grpc.UserServiceStub(channel).SubscribeUsers(
            user_pb2.SubscribeUsersRequest(since_event_id=0), metadata=metadata, timeout=10
        )
        for received, _ in enumerate(stream, start=1):
            if received >= events:
                break
        stream.cancel()
    return trace_id


def _traced(token: str, sampled: bool = True) -> tuple[str, tuple[tuple[str, str], ...]]:
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-{'01' if sampled else '00'}"
    return trace_id, (*client.bearer(token), ("traceparent", traceparent))
