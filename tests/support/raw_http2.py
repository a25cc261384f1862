"""A raw HTTP/2 client (the ``h2`` state machine over an asyncio socket), for requests no
well-behaved gRPC library would send: invalid header bytes, frames cut in half, streams
reset mid-message."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: uncompressed flag, 4-byte big-endian length, bytes."""
    return struct.pack(">BI", 0, len(message)) + message


def frame_header(length: int, frame_type: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte header of an HTTP/2 frame (RFC 9113 §4.1)."""
    return struct.pack(">I", length)[1:] + struct.pack(">BBI", frame_type, flags, stream_id)


@dataclass
class RawResponse:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    trailers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytes = b""
    reset: bool = False

    @property
    def grpc_status(self) -> int | None:
        status = self.trailers.get(b"grpc-status") or self.headers.get(b"grpc-status")
        return None if status is None else int(status)

    @property
    def grpc_message(self) -> str:
        return (self.trailers.get(b"grpc-message") or self.headers.get(b"grpc-message") or b"").decode()


class RawHttp2Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        config = h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
        )
        self.connection = h2.connection.H2Connection(config=config)

    @classmethod
    async def connect(cls, target: str) -> RawHttp2Client:
        host, _, port = target.rpartition(":")
        client = cls(*await asyncio.open_connection(host, int(port)))
        client.connection.initiate_connection()
        await client.flush()
        return client

    async def flush(self) -> None:
        self._writer.write(self.connection.data_to_send())
        await self._writer.drain()

    async def send_raw(self, raw: bytes) -> None:
        self._writer.write(raw)
        await self._writer.drain()

    async def unary(self, path: str, message: bytes, metadata: list[tuple[bytes, bytes]]) -> RawResponse:
        """One gRPC call with hand-made headers; returns what came back (5 s at most)."""
        stream_id = self.connection.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", b"localhost"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            *metadata,
        ]
        self.connection.send_headers(stream_id, headers)
        self.connection.send_data(stream_id, grpc_frame(message), end_stream=True)
        await self.flush()
        async with asyncio.timeout(5):
            return await self._response(stream_id)

    async def _response(self, stream_id: int) -> RawResponse:
        response = RawResponse()
        while True:
            chunk = await self._reader.read(65536)
            if not chunk:
                return response
            for event in self.connection.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                    response.headers = dict(event.headers or [])
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                    response.data += event.data or b""
                    self.connection.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.TrailersReceived) and event.stream_id == stream_id:
                    response.trailers = dict(event.headers or [])
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                    response.reset = True
                    return response
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    await self.flush()
                    return response
            await self.flush()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
