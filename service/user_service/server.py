"""The composition root: the one module that wires store, domain, API, telemetry and server."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from user_service.allocator import return_large_buffers_to_the_os
from user_service.api.auth_servicer import AuthServicer
from user_service.api.call import RpcObserver
from user_service.api.interceptors.admission import AdmissionInterceptor
from user_service.api.interceptors.auth import AuthInterceptor
from user_service.api.interceptors.decoding import RequestDecodingInterceptor
from user_service.api.interceptors.faults import FaultInjectionInterceptor
from user_service.api.interceptors.observation import RpcObservationInterceptor
from user_service.api.interceptors.recovery import RecoveryInterceptor
from user_service.api.interceptors.wrapping import ComposedInterceptor, HandlerWrappingInterceptor
from user_service.api.methods import AUTH_SERVICE, RPC_TABLE, USER_SERVICE, Budget
from user_service.api.servicer import UserServicer
from user_service.auth.credentials import ClientRegistry
from user_service.auth.jwks import JwksKeys
from user_service.auth.throttle import LoginThrottle
from user_service.auth.tokens import TokenKeys, TokenService
from user_service.config import ServerSettings
from user_service.domain.events import EventBroker
from user_service.domain.feed import ChangeFeed
from user_service.domain.ports import StoreHooks, UserStore
from user_service.domain.retention import OutboxRetention
from user_service.domain.users import UserDirectory
from user_service.faults import FaultFlags
from user_service.gen.auth.v1 import auth_pb2_grpc
from user_service.gen.user.v1 import user_pb2_grpc
from user_service.listening import PortInUseError
from user_service.replica_faults import ReplicaFaults
from user_service.store.postgres import PostgresUserStore
from user_service.store.sqlite import SqliteUserStore
from user_service.telemetry.instrumentation import Instrumentation
from user_service.telemetry.logging import LogWriter
from user_service.telemetry.setup import Telemetry, setup_telemetry
from user_service.telemetry.tracing import untraced

log = logging.getLogger(__name__)

SERVICE_NAME = "user-service"
SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass
class RunningServer:
    """A started server and the parts a shutdown (or a test) needs to reach. ``resources``
    closes everything the start opened, in reverse order."""

    server: grpc.aio.Server
    port: int
    metrics_port: int | None
    health: health.aio.HealthServicer
    broker: EventBroker
    directory: UserDirectory
    store: UserStore
    telemetry: Telemetry
    resources: AsyncExitStack

    async def shutdown(self, grace: float, drain_delay: float = 0.0) -> None:
        """Health NOT_SERVING -> end subscriptions -> (drain delay) -> stop: refuse new calls
        and give in-flight ones ``grace`` seconds -> then what the start opened, in reverse:
        the login threads, detached writes, the outbox relay and retention, the store, telemetry.
        """
        await self.health.enter_graceful_shutdown()
        self.broker.close()
        if drain_delay:
            await asyncio.sleep(drain_delay)
        await self.server.stop(grace)
        await self.resources.aclose()


async def start_server(
    settings: ServerSettings, telemetry: Telemetry | None = None, log_writer: LogWriter | None = None
) -> RunningServer:
    """Opens each resource and registers its close as it goes: a failure at any step closes
    what was opened before it, in reverse order, and raises. With ``log_writer`` (the
    process's, from ``configure_logging``), its records are exported over OTLP too."""
    async with AsyncExitStack() as resources:
        telemetry = telemetry or setup_telemetry(SERVICE_NAME, sampling_ratio=settings.trace_sampling_ratio)
        resources.push_async_callback(asyncio.to_thread, telemetry.shutdown)
        if log_writer is not None and (log_sink := telemetry.log_sink()) is not None:
            log_writer.add_sink(log_sink)
            resources.push_async_callback(asyncio.to_thread, log_writer.remove_sink, log_sink)
        # Credentials before storage: a bad key file fails the start before anything is opened.
        tokens = _token_service(settings) if settings.auth_enabled else None
        clients = ClientRegistry.load(settings.auth_clients_file) if settings.auth_clients_file else None
        instrumentation = Instrumentation(telemetry, settings)

        flags = FaultFlags(settings.flags_file, settings.replica) if settings.flags_file else None
        if flags is not None:
            resources.callback(flags.close)
        opened = await _open_store(settings, instrumentation.store_hooks(flags))
        resources.push_async_callback(opened.close)
        store = await instrumentation.store(opened)
        broker = instrumentation.broker()
        relay = instrumentation.relay(store, broker)
        with untraced():  # background loops: their tasks inherit this context
            await relay.start()
            resources.push_async_callback(relay.stop)
            if retention := _retention(settings, store):
                retention.start()
                resources.push_async_callback(retention.stop)
        directory = UserDirectory(store, relay)
        resources.push_async_callback(directory.drain)

        faults = None
        if flags is not None:
            faults = FaultInjectionInterceptor(flags, instrumentation.fault_observer(flags))

        # No grpc-level maximum_concurrent_rpcs: it would count health checks and anonymous
        # calls against the service's budget; the admission interceptor keeps budgets apart.
        server = grpc.aio.server(
            interceptors=_interceptors(settings, instrumentation.rpc_observers(), tokens, faults),
            options=_server_options(settings),
        )
        # Stopped by ``shutdown`` with its grace period first (a second stop is a no-op); this
        # one stops a server whose start failed, which grpc would otherwise try at collection.
        resources.push_async_callback(server.stop, 0)
        servicer = UserServicer(
            directory,
            ChangeFeed(store, broker),
            page_limits=settings.page_limits,
            max_batch_size=settings.max_batch_size,
            subscription_observer=instrumentation.subscription_observer(),
        )
        user_pb2_grpc.add_UserServiceServicer_to_server(servicer, server)
        services = [USER_SERVICE.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME]
        if tokens is not None and tokens.can_issue and clients is not None:
            return_large_buffers_to_the_os()
            throttle = LoginThrottle(max_concurrent=settings.max_concurrent_logins)
            resources.callback(throttle.close)
            auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(clients, tokens, throttle), server)
            services.append(AUTH_SERVICE.full_name)
        RPC_TABLE.require(services)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(services, server)

        port = _bind(server, settings)
        metrics_port = instrumentation.serve_metrics(RPC_TABLE.of_service(USER_SERVICE.full_name))
        await server.start()
        for service in ("", USER_SERVICE.full_name):
            await health_servicer.set(service, SERVING)
        if flags is not None:
            replica_faults = ReplicaFaults(relay, health_servicer)
            resources.push_async_callback(replica_faults.close)
            flags.subscribe(replica_faults.on_change)
        return RunningServer(
            server,
            port,
            metrics_port,
            health_servicer,
            broker,
            directory,
            store,
            telemetry,
            resources.pop_all(),
        )


async def _open_store(settings: ServerSettings, hooks: StoreHooks) -> UserStore:
    if settings.database_kind == "postgresql":
        return await PostgresUserStore.open(
            settings.database_url, pool_size=settings.database_pool_size, hooks=hooks
        )
    return await SqliteUserStore.open(settings.sqlite_path, hooks=hooks)


def _retention(settings: ServerSettings, store: UserStore) -> OutboxRetention | None:
    if not settings.event_retention_seconds:
        return None
    keep_for = timedelta(seconds=settings.event_retention_seconds)
    return OutboxRetention(store, keep_for=keep_for, check_every=min(keep_for / 10, timedelta(minutes=5)))


def _bind(server: grpc.aio.Server, settings: ServerSettings) -> int:
    address = f"{settings.host}:{settings.port}"
    credentials = _server_credentials(settings)
    try:
        return (
            server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        )
    except RuntimeError as error:
        raise PortInUseError(
            f"cannot listen on {address}: the port is taken or the address invalid"
        ) from error


def _interceptors(
    settings: ServerSettings,
    observers: list[RpcObserver],
    tokens: TokenService | None,
    faults: FaultInjectionInterceptor | None,
) -> list[grpc.aio.ServerInterceptor]:
    """Outermost first: observation sees the status the inner ones settle on (refusals by
    admission and injected faults included); callers are authenticated before their request
    bytes are parsed, and a fault strikes only authenticated, well-formed calls."""
    budgets = {Budget.AUTHENTICATED: settings.max_concurrent_rpcs, Budget.PUBLIC: settings.max_public_rpcs}
    layers: list[HandlerWrappingInterceptor] = [
        RpcObservationInterceptor(observers),
        AdmissionInterceptor(budgets),
        RecoveryInterceptor(),
    ]
    if tokens is not None:
        layers.append(AuthInterceptor(tokens))
    layers.append(RequestDecodingInterceptor())
    if faults is not None:  # innermost: it strikes only calls the service would serve, and reads them
        layers.append(faults)
    return [ComposedInterceptor(layers)]


def _token_service(settings: ServerSettings) -> TokenService:
    """Keys as configured (ServerSettings checked that the needed files are named)."""
    if settings.jwt_algorithm == "HS256" and settings.jwt_secret_file is not None:
        keys = TokenKeys.hmac(settings.jwt_secret_file.read_bytes().strip(), settings.jwt_key_id)
    elif settings.jwt_algorithm != "HS256" and settings.jwt_private_key_file is not None:
        keys = TokenKeys.asymmetric(
            settings.jwt_algorithm, settings.jwt_private_key_file.read_bytes(), settings.jwt_key_id
        )
    else:
        keys = TokenKeys.verify_only(settings.jwt_algorithm)
    return TokenService(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.token_ttl_seconds,
        leeway_seconds=settings.token_leeway_seconds,
        jwks=JwksKeys(settings.jwt_jwks_url) if settings.jwt_jwks_url else None,
    )


def _server_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """TLS when a certificate is configured; mutual TLS when a client CA is too."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """Transport limits that protect the service from oversized or abusive clients."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
        # One server per port, except the workers of one supervisor (``workers.py``, which makes
        # sure nothing else holds the port): a second instance must fail, not silently share it.
        ("grpc.so_reuseport", 1 if settings.worker_index is not None else 0),
        # Find dead peers (a subscriber whose host vanished) instead of holding them forever.
        ("grpc.keepalive_time_ms", int(settings.keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Keepalive enforcement: pings more frequent than this earn strikes, then GOAWAY.
        ("grpc.http2.min_recv_ping_interval_without_data_ms", int(settings.min_client_ping_seconds * 1000)),
        ("grpc.http2.max_ping_strikes", 2),
    ]


async def serve(settings: ServerSettings, log_writer: LogWriter | None = None) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    running = await start_server(settings, log_writer=log_writer)
    log.info(
        "user-service listening on %s:%d (metrics: %s)",
        settings.host,
        running.port,
        f"http://{settings.metrics_host}:{running.metrics_port}/metrics" if running.metrics_port else "off",
    )
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
