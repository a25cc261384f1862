"""Clients that vanish: killed mid-stream, or cutting their TCP connection mid-frame."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable

from tests.hostile.conftest import HostileServer
from tests.support.raw_http2 import PREFACE, RawHttp2Client, frame_header, grpc_frame
from user_service.gen.user.v1 import user_pb2

KILLED_CLIENTS = 8
RAW_CONNECTIONS = 300
HEADERS, SETTINGS, DATA = 1, 4, 0
END_HEADERS = 0x4


async def test_clients_killed_mid_stream(hostile: HostileServer) -> None:
    """Each client holds 30 streams of every kind when it is SIGKILLed."""
    async with hostile.attack("client process SIGKILLed holding 30 streams", KILLED_CLIENTS):
        for _ in range(KILLED_CLIENTS):
            client = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.hostile.abrupt_client",
                hostile.target,
                hostile.tokens["writer"],
                stdout=subprocess.PIPE,
            )
            assert client.stdout is not None
            ready = await asyncio.wait_for(client.stdout.readline(), 30)
            assert ready.strip() == b"ready"
            client.send_signal(signal.SIGKILL)
            await client.wait()


async def _close_at_once(client: RawHttp2Client, hostile: HostileServer) -> None:
    await client.close()


async def _close_mid_headers_frame(client: RawHttp2Client, hostile: HostileServer) -> None:
    await client.send_raw(frame_header(100, HEADERS, END_HEADERS, 1) + b"\x82\x86\x84")


async def _close_mid_grpc_message(client: RawHttp2Client, hostile: HostileServer) -> None:
    """A valid call whose message is cut short: the header promises more bytes than come."""
    stream_id = client.connection.get_next_available_stream_id()
    client.connection.send_headers(
        stream_id,
        [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/user.v1.UserService/CreateUser"),
            (b":authority", b"localhost"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"authorization", f"Bearer {hostile.tokens['writer']}".encode()),
        ],
    )
    message = grpc_frame(user_pb2.CreateUserRequest(user=user_pb2.User(name="Cut")).SerializeToString())
    client.connection.send_data(stream_id, message[: len(message) // 2])
    await client.flush()


async def _garbage_after_preface(client: RawHttp2Client, hostile: HostileServer) -> None:
    await client.send_raw(random.randbytes(random.randint(1, 200)))


async def _settings_frame_cut(client: RawHttp2Client, hostile: HostileServer) -> None:
    await client.send_raw(frame_header(36, SETTINGS, 0, 0) + b"\x00\x03")


RawAttack = Callable[[RawHttp2Client, HostileServer], Awaitable[None]]
RAW_ATTACKS: list[RawAttack] = [
    _close_at_once,
    _close_mid_headers_frame,
    _close_mid_grpc_message,
    _garbage_after_preface,
    _settings_frame_cut,
]


async def _half_preface(hostile: HostileServer) -> None:
    host, _, port = hostile.target.rpartition(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(PREFACE[: random.randint(1, len(PREFACE) - 1)])
    await writer.drain()
    writer.close()


async def test_raw_connections_cut_mid_frame(hostile: HostileServer) -> None:
    async def one(n: int) -> None:
        if n % (len(RAW_ATTACKS) + 1) == len(RAW_ATTACKS):
            await _half_preface(hostile)
            return
        client = await RawHttp2Client.connect(hostile.target)
        try:
            await RAW_ATTACKS[n % (len(RAW_ATTACKS) + 1)](client, hostile)
            await asyncio.sleep(random.uniform(0, 0.01))
        finally:
            await client.close()

    async with hostile.attack("raw TCP/HTTP/2 connection cut mid-frame (6 ways)", RAW_CONNECTIONS):
        for first in range(0, RAW_CONNECTIONS, 20):
            await asyncio.gather(*(one(n) for n in range(first, first + 20)))
