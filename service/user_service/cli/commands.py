"""Client subcommands: one call each, with a deadline, printing JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from user_service.cli.output import print_message
from user_service.client import Metadata, bearer, open_aio_channel
from user_service.config import ClientSettings
from user_service.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.telemetry.setup import Telemetry, setup_telemetry
from user_service.telemetry.tracing import client_interceptors

if TYPE_CHECKING:
    from user_service.gen.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub


CLI_SERVICE_NAME = "user-service-cli"


@dataclass(frozen=True)
class CallOptions:
    """What every call carries: its deadline and, with auth, the bearer token."""

    timeout: float
    metadata: Metadata


def call_options(settings: ClientSettings) -> CallOptions:
    return CallOptions(settings.timeout, bearer(settings.token))


def run(args: argparse.Namespace, settings: ClientSettings) -> int:
    """Runs one command inside a root span; the server's spans continue its trace.

    The telemetry outlives the event loop: the tracing interceptor ends a stream's CLIENT span
    when its response generator is closed, and a stream the command cancels (``subscribe
    --limit``) is closed only when ``asyncio.run`` finalizes the loop's generators — flushing
    before that lost the span."""
    # No log export: a command reports to its user on stdout/stderr and writes no log records.
    telemetry = setup_telemetry(CLI_SERVICE_NAME, export_logs=False)
    try:
        asyncio.run(_traced_command(args, settings, telemetry))
    finally:
        telemetry.shutdown()
    return 0


async def _traced_command(args: argparse.Namespace, settings: ClientSettings, telemetry: Telemetry) -> None:
    interceptors = client_interceptors(telemetry.tracer_provider) if telemetry.tracing else ()
    async with open_aio_channel(settings, interceptors) as channel:
        with telemetry.tracer.start_as_current_span(f"{CLI_SERVICE_NAME} {args.command}"):
            if args.command == "login":
                await _login(auth_pb2_grpc.AuthServiceStub(channel), args, call_options(settings))
            else:
                stub = user_pb2_grpc.UserServiceStub(channel)
                await _COMMANDS[args.command](stub, args, call_options(settings))


async def _login(stub: AuthServiceAsyncStub, args: argparse.Namespace, call: CallOptions) -> None:
    request = auth_pb2.LoginRequest(client_id=args.client_id, client_secret=args.client_secret)
    print_message(await stub.Login(request, timeout=call.timeout))


async def _create(stub: UserServiceAsyncStub, args: argparse.Namespace, call: CallOptions) -> None:
    request = user_pb2.CreateUserRequest(user=user_pb2.User(name=args.name, email=args.email))
    print_message(await stub.CreateUser(request, timeout=call.timeout, metadata=call.metadata))


async def _get(stub: UserServiceAsyncStub, args: argparse.Namespace, call: CallOptions) -> None:
    print_message(
        await stub.GetUser(user_pb2.GetUserRequest(id=args.id), timeout=call.timeout, metadata=call.metadata)
    )


async def _list(stub: UserServiceAsyncStub, args: argparse.Namespace, call: CallOptions) -> None:
    request = user_pb2.ListUsersRequest(page_size=args.page_size, page_token=args.page_token)
    response = await stub.ListUsers(request, timeout=call.timeout, metadata=call.metadata)
    if args.all:
        everyone = user_pb2.ListUsersResponse(users=response.users)
        while response.next_page_token:
            request.page_token = response.next_page_token
            response = await stub.ListUsers(request, timeout=call.timeout, metadata=call.metadata)
            everyone.users.extend(response.users)
        response = everyone
    print_message(response)


async def _update(stub: UserServiceAsyncStub, args: argparse.Namespace, call: CallOptions) -> None:
    user = user_pb2.User(id=args.id, etag=args.etag)
    mask = FieldMask()
    for field in ("name", "email"):
        if getattr(args, field) is not None:
            setattr(user, field, getattr(args, field))
            mask.paths.append(field)
    request = user_pb2.UpdateUserRequest(user=user, update_mask=mask)
    print_message(await stub.UpdateUser(request, timeout=call.timeout, metadata=call.metadata))


async def _delete(stub: UserServiceAsyncStub, args: argparse.Namespace, call: CallOptions) -> None:
    request = user_pb2.DeleteUserRequest(id=args.id, etag=args.etag)
    print_message(await stub.DeleteUser(request, timeout=call.timeout, metadata=call.metadata))


async def _subscribe(stub: UserServiceAsyncStub, args: argparse.Namespace, call: CallOptions) -> None:
    """Ends after --limit events, or quietly when the deadline (--timeout) passes."""
    request = user_pb2.SubscribeUsersRequest()
    if args.since is not None:
        request.since_event_id = args.since
    stream = stub.SubscribeUsers(request, timeout=call.timeout, metadata=call.metadata)
    received = 0
    try:
        async for event in stream:
            print_message(event)
            received += 1
            if args.limit is not None and received >= args.limit:
                stream.cancel()
                return
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise


async def _batch_create(stub: UserServiceAsyncStub, args: argparse.Namespace, call: CallOptions) -> None:
    print_message(
        await stub.BatchCreateUsers(_create_requests(args.file), timeout=call.timeout, metadata=call.metadata)
    )


async def _create_requests(lines: TextIO) -> AsyncIterator[user_pb2.CreateUserRequest]:
    for line in lines:
        if line.strip():
            fields = json.loads(line)
            yield user_pb2.CreateUserRequest(user=user_pb2.User(name=fields["name"], email=fields["email"]))


async def _lookup(stub: UserServiceAsyncStub, args: argparse.Namespace, call: CallOptions) -> None:
    """Sends each id once the previous one is answered, so a failed id ends the exchange cleanly."""
    exchange = stub.LookupUsers(timeout=call.timeout, metadata=call.metadata)
    for user_id in args.ids:
        await exchange.write(user_pb2.GetUserRequest(id=user_id))
        response = await exchange.read()
        if not isinstance(response, user_pb2.GetUserResponse):
            break
        print_message(response)
    await exchange.done_writing()
    await exchange.read()  # EOF, or raises the call's error status


_COMMANDS = {
    "create": _create,
    "get": _get,
    "list": _list,
    "update": _update,
    "delete": _delete,
    "subscribe": _subscribe,
    "batch-create": _batch_create,
    "lookup": _lookup,
}
