"""SubscribeUsers fan-out: many live subscribers, a steady stream of writes — how fast each
change reaches every subscriber, and what holding them costs the server.

    make bench-fanout      # python -m bench.fanout --subscribers 1000 --writes 200 --duration 10

The server runs with its production defaults (auth off: one anonymous host holds every
subscription, so its per-caller cap is raised to the subscriber count), pinned to core 0. The
subscribers — grpc.aio streams spread over a few connections — and the writer (CreateUser at a
fixed rate) share one process on core 1. Each event's latency is its receipt minus its
``event_time`` (the server's commit time; one host, one clock). Also reported: the server's own
delivery-lag histogram (commit → written to the stream), subscribers cut off for falling
behind, and the server's RSS idle, with every subscriber connected, and at the end.

Across processes (``--writer other``): the writes go to a second server process on the same
database, so every event reaches the subscribers through the outbox relay of the first — woken
by PostgreSQL's NOTIFY (``--store postgres``: a local cluster the benchmark starts) or by its
poll of the SQLite file. That latency is what subscribers see in a multi-replica deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from devkit.postgres import PostgresCluster, server_bindir
from devkit.processes import ServerProcess
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.listening import free_port

if TYPE_CHECKING:
    from user_service.gen.user.v1.user_pb2_grpc import UserServiceAsyncStub

CONNECTIONS = 8
WRITES_IN_FLIGHT = 32
TOO_SLOW = 'user_service_subscriber_cutoffs_total{reason="too_slow"}'
PINNED = (os.cpu_count() or 1) >= 2


@dataclass
class Deliveries:
    latencies: list[float] = field(default_factory=list)
    event_ids: set[int] = field(default_factory=set)  # the distinct changes that reached anyone
    ended: dict[str, int] = field(default_factory=dict)  # status code of streams that ended early


async def subscribe(stub: UserServiceAsyncStub, deliveries: Deliveries) -> None:
    stream = stub.SubscribeUsers(user_pb2.SubscribeUsersRequest())
    try:
        async for event in stream:
            deliveries.latencies.append(time.time() - event.event_time.ToNanoseconds() / 1e9)
            deliveries.event_ids.add(event.event_id)
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.CANCELLED:
            deliveries.ended[error.code().name] = deliveries.ended.get(error.code().name, 0) + 1


async def write(stub: UserServiceAsyncStub, rate: float, seconds: float) -> dict[str, int]:
    """CreateUser at ``rate`` per second, at most ``WRITES_IN_FLIGHT`` at once (as a real
    client bounds itself: a server that cannot keep up then sees the rate it can take, not an
    ever-growing queue); returns the outcomes by status code."""
    tag, start, in_flight = os.urandom(4).hex(), time.monotonic(), asyncio.Semaphore(WRITES_IN_FLIGHT)
    outcomes: dict[str, int] = {}

    async def create(n: int) -> None:
        request = user_pb2.CreateUserRequest(
            user=user_pb2.User(name=f"Fan {n}", email=f"fan-{tag}-{n}@example.com")
        )
        try:
            await stub.CreateUser(request, timeout=30)
            code = "OK"
        except grpc.aio.AioRpcError as error:
            code = error.code().name
        finally:
            in_flight.release()
        outcomes[code] = outcomes.get(code, 0) + 1

    calls = []
    for n in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        await in_flight.acquire()
        calls.append(asyncio.ensure_future(create(n)))
    await asyncio.gather(*calls)
    return outcomes


async def run(server: ServerProcess, writer_target: str, args: argparse.Namespace) -> None:
    idle = server.resources()
    channels = [grpc.aio.insecure_channel(server.target) for _ in range(CONNECTIONS)]
    stubs: list[UserServiceAsyncStub] = [user_pb2_grpc.UserServiceStub(channel) for channel in channels]
    deliveries = Deliveries()
    streams = [
        asyncio.ensure_future(subscribe(stubs[n % CONNECTIONS], deliveries)) for n in range(args.subscribers)
    ]
    while server.metric("user_service_subscribers") < args.subscribers:  # noqa: ASYNC110 - polls another process
        await asyncio.sleep(0.1)
    connected = server.resources()
    async with grpc.aio.insecure_channel(writer_target) as writer_channel:
        writes = await write(user_pb2_grpc.UserServiceStub(writer_channel), args.writes, args.duration)
    await asyncio.sleep(args.drain)
    for stream in streams:
        stream.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    for channel in channels:
        await channel.close()
    report(
        server, args, deliveries, writes, (idle.rss_bytes, connected.rss_bytes, server.resources().rss_bytes)
    )


def report(
    server: ServerProcess,
    args: argparse.Namespace,
    deliveries: Deliveries,
    writes: dict[str, int],
    rss: tuple[int, int, int],
) -> None:
    expected = len(deliveries.event_ids) * args.subscribers
    got = sorted(deliveries.latencies)

    def quantile(q: float) -> float:
        return got[min(len(got) - 1, int(q * len(got)))] * 1000 if got else float("nan")

    print(
        f"\n{args.subscribers} subscribers, {args.writes:g} writes/s for {args.duration:g} s"
        f" ({'server on core 0, clients on core 1' if PINNED else 'unpinned'}), {args.store},"
        f" writes made on {'another server process' if args.writer == 'other' else 'the same server'}:\n"
        f"  writes                   {writes}, {len(deliveries.event_ids) / args.duration:.0f}/s committed"
        f" (at most {WRITES_IN_FLIGHT} in flight)\n"
        f"  events delivered         {len(got)} of {expected} (every committed change to every subscriber:"
        f" {len(got) / max(expected, 1):.1%}),"
        f" {len(got) / (args.duration + args.drain):.0f}/s\n"
        f"  latency at the client    p50 {quantile(0.5):.1f} ms, p99 {quantile(0.99):.1f} ms,"
        f" max {got[-1] * 1000 if got else float('nan'):.1f} ms (commit → received)\n"
        f"  server's delivery lag    {server_lag(server)} (commit → written, its histogram)\n"
        f"  cut off as too slow      {server.metric(TOO_SLOW):.0f}"
        f"; streams ended early by status: {deliveries.ended or 'none'}\n"
        f"  server RSS               idle {rss[0] / 2**20:.0f} MiB, {args.subscribers} subscribed"
        f" {rss[1] / 2**20:.0f} MiB, after the run {rss[2] / 2**20:.0f} MiB"
        f" ({(rss[1] - rss[0]) / args.subscribers / 1024:.0f} KiB per subscriber)"
    )


def server_lag(server: ServerProcess) -> str:
    """p50/p99 as the upper bounds of the histogram buckets they fall in."""
    text = server._scrape()
    buckets = [
        (float(le), float(count))
        for le, count in re.findall(
            r'^user_service_event_delivery_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M
        )
    ]
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return "no deliveries"

    def bound(q: float) -> float:
        return next(le for le, count in buckets if count >= q * total)

    return f"p50 ≤ {bound(0.5) * 1000:g} ms, p99 ≤ {bound(0.99) * 1000:g} ms"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--writes", type=float, default=200, help="CreateUser calls per second")
    parser.add_argument("--duration", type=float, default=10, help="seconds of writes")
    parser.add_argument("--drain", type=float, default=5, help="seconds to let deliveries finish")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--writer",
        choices=["same", "other"],
        default="same",
        help="write through the subscribers' server or another",
    )
    args = parser.parse_args()
    if PINNED:
        os.sched_setaffinity(0, {1})
    with contextlib.ExitStack() as stack:
        data = stack.enter_context(tempfile.TemporaryDirectory(prefix="user-service-fanout-"))
        database = f"sqlite:///{data}/users.db"
        if args.store == "postgres":
            bindir = server_bindir()
            if bindir is None:
                parser.error("PostgreSQL server binaries not found: apt-get install postgresql")
            cluster = PostgresCluster(bindir, free_port()).start()
            stack.callback(cluster.stop)
            database = cluster.url
        cap = str(args.subscribers)
        limits = {"USER_SERVICE_MAX_SUBSCRIBERS": cap, "USER_SERVICE_MAX_SUBSCRIPTIONS_PER_CALLER": cap}
        server = ServerProcess(database, env=limits).start()
        stack.callback(server.stop)
        if PINNED and server.process is not None:
            os.sched_setaffinity(server.process.pid, {0})
        writer_target = server.target
        if args.writer == "other":
            writer = ServerProcess(database).start()
            stack.callback(writer.stop)
            writer_target = writer.target
        asyncio.run(run(server, writer_target, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
