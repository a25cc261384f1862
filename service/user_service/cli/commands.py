"""Client subcommands: one call each, with a deadline, printing JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TextIO

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from user_service.cli.output import print_message
from user_service.config import ClientSettings
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.telemetry.setup import setup_telemetry
from user_service.telemetry.tracing import client_interceptors

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub


CLI_SERVICE_NAME = "user-service-cli"


async def run(args: argparse.Namespace, settings: ClientSettings) -> int:
    """Runs one command inside a root span; the server's spans continue its trace."""
    telemetry = setup_telemetry(CLI_SERVICE_NAME)
    interceptors = client_interceptors(telemetry.tracer_provider) if telemetry.tracing else ()
    try:
        async with grpc.aio.insecure_channel(settings.target, interceptors=interceptors) as channel:
            stub = user_pb2_grpc.UserServiceStub(channel)
            with telemetry.tracer.start_as_current_span(f"{CLI_SERVICE_NAME} {args.command}"):
                await _COMMANDS[args.command](stub, args, settings.timeout)
    finally:
        await asyncio.to_thread(telemetry.shutdown)
    return 0


async def _create(stub: UserServiceAsyncStub, args: argparse.Namespace, deadline: float) -> None:
    request = user_pb2.CreateUserRequest(user=user_pb2.User(name=args.name, email=args.email))
    print_message(await stub.CreateUser(request, timeout=deadline))


async def _get(stub: UserServiceAsyncStub, args: argparse.Namespace, deadline: float) -> None:
    print_message(await stub.GetUser(user_pb2.GetUserRequest(id=args.id), timeout=deadline))


async def _list(stub: UserServiceAsyncStub, args: argparse.Namespace, deadline: float) -> None:
    request = user_pb2.ListUsersRequest(page_size=args.page_size, page_token=args.page_token)
    response = await stub.ListUsers(request, timeout=deadline)
    if args.all:
        everyone = user_pb2.ListUsersResponse(users=response.users)
        while response.next_page_token:
            request.page_token = response.next_page_token
            response = await stub.ListUsers(request, timeout=deadline)
            everyone.users.extend(response.users)
        response = everyone
    print_message(response)


async def _update(stub: UserServiceAsyncStub, args: argparse.Namespace, deadline: float) -> None:
    user = user_pb2.User(id=args.id, etag=args.etag)
    mask = FieldMask()
    for field in ("name", "email"):
        if getattr(args, field) is not None:
            setattr(user, field, getattr(args, field))
            mask.paths.append(field)
    request = user_pb2.UpdateUserRequest(user=user, update_mask=mask)
    print_message(await stub.UpdateUser(request, timeout=deadline))


async def _delete(stub: UserServiceAsyncStub, args: argparse.Namespace, deadline: float) -> None:
    request = user_pb2.DeleteUserRequest(id=args.id, etag=args.etag)
    print_message(await stub.DeleteUser(request, timeout=deadline))


async def _subscribe(stub: UserServiceAsyncStub, args: argparse.Namespace, deadline: float) -> None:
    """Ends after --limit events, or quietly when the deadline (--timeout) passes."""
    request = user_pb2.SubscribeUsersRequest()
    if args.since is not None:
        request.since_event_id = args.since
    call = stub.SubscribeUsers(request, timeout=deadline)
    received = 0
    try:
        async for event in call:
            print_message(event)
            received += 1
            if args.limit is not None and received >= args.limit:
                call.cancel()
                return
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise


async def _batch_create(stub: UserServiceAsyncStub, args: argparse.Namespace, deadline: float) -> None:
    print_message(await stub.BatchCreateUsers(_create_requests(args.file), timeout=deadline))


async def _create_requests(lines: TextIO) -> AsyncIterator[user_pb2.CreateUserRequest]:
    for line in lines:
        if line.strip():
            fields = json.loads(line)
            yield user_pb2.CreateUserRequest(user=user_pb2.User(name=fields["name"], email=fields["email"]))


async def _lookup(stub: UserServiceAsyncStub, args: argparse.Namespace, deadline: float) -> None:
    """Sends each id once the previous one is answered, so a failed id ends the exchange cleanly."""
    call = stub.LookupUsers(timeout=deadline)
    for user_id in args.ids:
        await call.write(user_pb2.GetUserRequest(id=user_id))
        response = await call.read()
        if not isinstance(response, user_pb2.GetUserResponse):
            break
        print_message(response)
    await call.done_writing()
    await call.read()  # EOF, or raises the call's error status


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
