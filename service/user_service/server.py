"""The composition root: the one module that wires store, domain, API and server together."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from user_service.api.interceptors.decoding import RequestDecodingInterceptor
from user_service.api.servicer import UserServicer
from user_service.config import ServerSettings
from user_service.domain.events import EventBroker
from user_service.domain.feed import ChangeFeed
from user_service.domain.users import UserDirectory
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc
from user_service.store.base import UserStore
from user_service.store.sqlite import SqliteUserStore

log = logging.getLogger(__name__)

USER_SERVICE_NAME = user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass
class RunningServer:
    """A started server and the parts a shutdown (or a test) needs to reach."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    broker: EventBroker
    directory: UserDirectory
    store: UserStore

    async def shutdown(self, grace: float, drain_delay: float = 0.0) -> None:
        """Health NOT_SERVING -> end subscriptions -> (drain delay) -> stop: refuse new calls
        and give in-flight ones ``grace`` seconds -> wait for detached writes -> close the store.
        """
        await self.health.enter_graceful_shutdown()
        self.broker.close()
        if drain_delay:
            await asyncio.sleep(drain_delay)
        await self.server.stop(grace)
        await self.directory.drain()
        await self.store.close()


async def open_store(settings: ServerSettings) -> UserStore:
    return await SqliteUserStore.open(settings.sqlite_path)


async def start_server(settings: ServerSettings) -> RunningServer:
    store = await open_store(settings)
    broker = EventBroker(buffer_size=settings.subscriber_buffer, max_subscribers=settings.max_subscribers)
    directory = UserDirectory(store, broker)
    servicer = UserServicer(
        directory,
        ChangeFeed(store, broker),
        page_limits=settings.page_limits,
        max_batch_size=settings.max_batch_size,
    )
    server = grpc.aio.server(interceptors=[RequestDecodingInterceptor()])
    user_pb2_grpc.add_UserServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [USER_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    await server.start()
    for service in ("", USER_SERVICE_NAME):
        await health_servicer.set(service, SERVING)
    return RunningServer(server, port, health_servicer, broker, directory, store)


async def serve(settings: ServerSettings) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    running = await start_server(settings)
    log.info("user-service listening on %s:%d", settings.host, running.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info(
        "shutting down: NOT_SERVING for %.1fs, then in-flight calls get up to %.1fs",
        settings.drain_delay,
        settings.grace_period,
    )
    await running.shutdown(settings.grace_period, settings.drain_delay)
    log.info("stopped")
