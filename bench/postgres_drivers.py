"""asyncpg vs psycopg 3 for this service's queries: why the PostgreSQL store uses asyncpg.

    python -m bench.postgres_drivers            # starts its own PostgreSQL on a loopback port

Both drivers as a service would use them: async, a pool of 8 connections, prepared statements,
16 operations in flight. Two operations, the store's shapes: a point read by primary key
(GetUser), and a write transaction (outbox lock + one UPDATE … RETURNING, as UpdateUser does).
Reported: operations per second and the client's CPU per operation — the figure that matters
for a service bound by one core per process. Rounds alternate the drivers; the client runs on
one core (``taskset`` it for stable numbers) and the server wherever the kernel puts it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import psycopg_pool

from devkit.postgres import PostgresCluster, server_bindir
from user_service.listening import free_port

READ = "SELECT id, name, email, create_time, update_time, version FROM users WHERE id = $1"
WRITE = "UPDATE users SET version = version + 1, update_time = now() WHERE id = $1 RETURNING version"
ROWS = 1000
POOL = 8
IN_FLIGHT = 16


async def _measure(label: str, operation: Callable[[int], Awaitable[None]], count: int) -> None:
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(index: int) -> None:
        async with limit:
            await operation(index % ROWS + 1)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(index) for index in range(count)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"  {label:<28} {count / wall:8.0f} ops/s  {cpu / count * 1e6:7.1f} µs CPU per op", flush=True)


async def _run(url: str, count: int, rounds: int) -> None:
    setup = await asyncpg.connect(url)
    await setup.execute(
        "CREATE TABLE users (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL,"
        " email TEXT NOT NULL UNIQUE, create_time TIMESTAMPTZ NOT NULL, update_time TIMESTAMPTZ NOT NULL,"
        " version BIGINT NOT NULL);"
        f"INSERT INTO users (name, email, create_time, update_time, version) SELECT 'n' || g,"
        f" 'e' || g || '@example.com', now(), now(), 1 FROM generate_series(1, {ROWS}) g"
    )
    await setup.close()
    apg = await asyncpg.create_pool(url, min_size=POOL, max_size=POOL)
    pg3 = psycopg_pool.AsyncConnectionPool(
        url, min_size=POOL, max_size=POOL, open=False, kwargs={"autocommit": True, "prepare_threshold": 0}
    )
    await pg3.open(wait=True)

    async def asyncpg_read(user_id: int) -> None:
        async with apg.acquire() as connection:
            await connection.fetchrow(READ, user_id)

    async def psycopg_read(user_id: int) -> None:
        async with pg3.connection() as connection:
            await (await connection.execute(READ.replace("$1", "%s"), (user_id,))).fetchone()

    async def asyncpg_write(user_id: int) -> None:
        async with apg.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(1)")
            await connection.fetchrow(WRITE, user_id)

    async def psycopg_write(user_id: int) -> None:
        async with pg3.connection() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(1)")
            await (await connection.execute(WRITE.replace("$1", "%s"), (user_id,))).fetchone()

    try:
        for round_ in range(1, rounds + 1):
            print(f"round {round_}")
            await _measure("asyncpg point read", asyncpg_read, count)
            await _measure("psycopg 3 point read", psycopg_read, count)
            await _measure("asyncpg write transaction", asyncpg_write, count)
            await _measure("psycopg 3 write transaction", psycopg_write, count)
    finally:
        await apg.close()
        await pg3.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--operations", type=int, default=4000, help="per driver, operation and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    bindir = server_bindir()
    if bindir is None:
        parser.error("PostgreSQL server binaries not found: apt-get install postgresql (or set PG_BINDIR)")
    cluster = PostgresCluster(bindir, free_port()).start()
    try:
        asyncio.run(_run(cluster.url, args.operations, args.rounds))
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
