"""The floor of a grpc.aio server: the service's proto, GetUser answered from a constant.

    python -m bench.aio_floor PORT [--sqlite-read]

No interceptor, no store, no telemetry — what grpc.aio and protobuf cost by themselves, the
throughput the service is measured against (`make bench`). Its sync twin is
``bench.constant_server`` (a thread-pool server).

``--sqlite-read`` adds one thing: each call reads its user by primary key from a WAL-mode
SQLite file on the event loop thread (as the service does) and answers with that row. The
read alone takes ~3 µs, yet it costs this server about a quarter of its throughput: the
stdlib ``sqlite3`` module releases the GIL around every statement, and grpc.aio's
event-engine threads, waiting to hand over completed network work, take it each time — a
handover the constant floor never makes. The difference between the two floors is what any
SQLite-backed grpc.aio servicer pays, before a line of service code runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
from pathlib import Path

import grpc

from bench.constant_server import USER
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

RESPONSE = user_pb2.GetUserResponse(user=USER)


class FloorUsers(user_pb2_grpc.UserServiceServicer):
    async def GetUser(
        self, request: user_pb2.GetUserRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> user_pb2.GetUserResponse:
        return RESPONSE


class SqliteFloorUsers(user_pb2_grpc.UserServiceServicer):
    def __init__(self, database: sqlite3.Connection) -> None:
        self._database = database

    async def GetUser(
        self, request: user_pb2.GetUserRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> user_pb2.GetUserResponse:
        query = "SELECT id, name, email FROM users WHERE id = ?"
        row = self._database.execute(query, (request.id,)).fetchone()
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"user {request.id} not found")
        return user_pb2.GetUserResponse(user=user_pb2.User(id=row[0], name=row[1], email=row[2], etag="1"))


def _database(directory: str) -> sqlite3.Connection:
    """Every id the benchmark may ask for (1) exists; the file is WAL, as the service's is."""
    connection = sqlite3.connect(Path(directory) / "floor.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL)")
    connection.execute("INSERT INTO users VALUES (?, ?, ?)", (USER.id, USER.name, USER.email))
    return connection


async def serve(port: int, sqlite_read: bool) -> None:
    server = grpc.aio.server()
    with tempfile.TemporaryDirectory(prefix="aio-floor-") as directory:
        servicer: user_pb2_grpc.UserServiceServicer = (
            SqliteFloorUsers(_database(directory)) if sqlite_read else FloorUsers()  # type: ignore[abstract]
        )
        user_pb2_grpc.add_UserServiceServicer_to_server(servicer, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("port", type=int)
    parser.add_argument("--sqlite-read", action="store_true", help="read the user from SQLite on each call")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.sqlite_read))


if __name__ == "__main__":
    main()
