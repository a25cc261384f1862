"""The ``user-service`` command: ``serve`` runs the server, the other subcommands call it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pydantic

from user_service.cli import commands
from user_service.cli.output import print_rpc_error
from user_service.config import ClientSettings, ServerSettings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        settings = ClientSettings(
            **_given(args, "target", "timeout", "token", "ca_file", "cert_file", "key_file")
        )
        return commands.run(args, settings)
    except pydantic.ValidationError as error:
        parser.error(str(error))
    except grpc.aio.AioRpcError as error:
        print_rpc_error(error)
        return 1
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace) -> int:
    settings = ServerSettings(
        **_given(
            args,
            "host",
            "port",
            "database_url",
            "grace_period",
            "drain_delay",
            "log_level",
            "log_format",
            "metrics_port",
            "workers",
        )
    )
    # The server's imports are not needed by client commands.
    from user_service.listening import PortInUseError
    from user_service.server import serve
    from user_service.telemetry.logging import configure_logging
    from user_service.workers import Supervisor, default_worker_count, die_with_supervisor

    log_writer = configure_logging(settings.log_level, settings.log_format)
    workers = settings.workers or default_worker_count()
    if settings.worker_index is not None:
        die_with_supervisor()
    try:
        if workers > 1 and settings.worker_index is None:
            return Supervisor(settings, workers).run()
        asyncio.run(serve(settings, log_writer))
    except PortInUseError as error:
        logging.getLogger("user_service").critical("%s", error)
        return 1
    finally:
        log_writer.stop()
    return 0


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """Only flags the user passed, so environment variables fill in the rest."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="user-service", description=__doc__)
    client = argparse.ArgumentParser(add_help=False)
    client.add_argument(
        "--target", help="server host:port (env USER_SERVICE_TARGET, default localhost:50051)"
    )
    client.add_argument("--timeout", type=float, help="deadline of the call in seconds (default 10)")
    client.add_argument("--token", help="access token from `login` (env USER_SERVICE_TOKEN)")
    client.add_argument(
        "--ca-file", type=Path, help="CA of the server certificate: use TLS (env USER_SERVICE_CA_FILE)"
    )
    client.add_argument(
        "--cert-file", type=Path, help="client certificate for mutual TLS (env USER_SERVICE_CERT_FILE)"
    )
    client.add_argument("--key-file", type=Path, help="client key for mutual TLS (env USER_SERVICE_KEY_FILE)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gRPC server until SIGTERM/SIGINT")
    serve.add_argument("--host", help="interface to bind (env USER_SERVICE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="gRPC port (env USER_SERVICE_PORT, default 50051)")
    serve.add_argument("--database-url", help="sqlite:///path (env USER_SERVICE_DATABASE_URL)")
    serve.add_argument("--grace-period", type=float, help="shutdown drain seconds (default 10)")
    serve.add_argument(
        "--drain-delay", type=float, help="NOT_SERVING seconds before refusing calls (default 0)"
    )
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    serve.add_argument("--log-format", choices=["json", "text"], help="default json")
    serve.add_argument(
        "--metrics-port",
        type=int,
        help="/metrics port; worker i uses port + i (env USER_SERVICE_METRICS_PORT, default 9464)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the port; 0 = one per core (env USER_SERVICE_WORKERS, default 0)",
    )

    login = sub.add_parser("login", parents=[client], help="exchange client credentials for an access token")
    login.add_argument("--client-id", required=True)
    login.add_argument(
        "--client-secret",
        default=os.environ.get("USER_SERVICE_CLIENT_SECRET"),
        help="default: env USER_SERVICE_CLIENT_SECRET (keeps it out of the shell history)",
    )

    create = sub.add_parser("create", parents=[client], help="create a user")
    create.add_argument("--name", required=True)
    create.add_argument("--email", required=True)

    get = sub.add_parser("get", parents=[client], help="get a user by id")
    get.add_argument("id", type=int)

    list_ = sub.add_parser("list", parents=[client], help="list users, one page or --all")
    list_.add_argument("--page-size", type=int, default=0)
    list_.add_argument("--page-token", default="")
    list_.add_argument("--all", action="store_true", help="follow next_page_token to the end")

    update = sub.add_parser("update", parents=[client], help="update a user's name and/or email")
    update.add_argument("id", type=int)
    update.add_argument("--name")
    update.add_argument("--email")
    update.add_argument("--etag", default="", help="only update if the user still has this etag")

    delete = sub.add_parser("delete", parents=[client], help="delete a user")
    delete.add_argument("id", type=int)
    delete.add_argument("--etag", default="", help="only delete if the user still has this etag")

    subscribe = sub.add_parser(
        "subscribe", parents=[client], help="print change events as JSON lines until --limit or the deadline"
    )
    subscribe.add_argument("--since", type=int, help="replay events after this event_id first")
    subscribe.add_argument("--limit", type=int, help="stop after this many events")

    batch = sub.add_parser(
        "batch-create", parents=[client], help='create users from JSON lines {"name","email"}'
    )
    batch.add_argument(
        "file", nargs="?", type=argparse.FileType("r"), default=sys.stdin, help="default: stdin"
    )

    lookup = sub.add_parser("lookup", parents=[client], help="stream ids, get users back as they resolve")
    lookup.add_argument("ids", type=int, nargs="+")
    return parser
