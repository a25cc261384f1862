"""Faults on purpose (``user_service.faults``): a share of some methods' calls waits, or fails
with a chosen status, while a flag says so. Inside the observation layer, so spans, metrics and
the access log see an injected fault exactly as they would see a real one; after auth and
decoding, so only calls the service would have served are struck (and a fault aimed at a user
reads the request). Only ``user.v1.UserService`` is faulted —
health checks and logins keep telling the truth.

While the feed is stalled, a write that succeeded gets a span saying its change event is held
in the outbox: the trace an exemplar of a write leads to names the flag behind the silence.

With every flag off a call pays one attribute read (the snapshot ``FaultFlags`` keeps).
"""

from __future__ import annotations

import asyncio
from typing import Any

from user_service.api.call import Context, FaultObserver
from user_service.api.interceptors.wrapping import Handler, HandlerWrappingInterceptor, behavior_of, rewrap
from user_service.api.methods import USER_SERVICE, RpcMethod
from user_service.auth.roles import Role
from user_service.faults import FaultFlags


class FaultInjectionInterceptor(HandlerWrappingInterceptor):
    def __init__(self, flags: FaultFlags, observer: FaultObserver) -> None:
        super().__init__()
        self._flags = flags
        self._observer = observer

    def wrap(self, handler: Any, method: RpcMethod) -> Handler:
        if method.service != USER_SERVICE.full_name:
            return handler  # type: ignore[no-any-return]
        behavior = behavior_of(handler)
        flags, observer, name = self._flags, self._observer, method.name
        writes = method.role in (Role.WRITER, Role.ADMIN)  # the calls whose events feed subscribers

        async def faulty(request: Any, context: Context) -> Any:
            faults = flags.current
            if faults.latency is not None and faults.latency.hits(name, request):
                with observer.injected(faults.latency.flag, "latency"):
                    await asyncio.sleep(faults.latency.delay_seconds)
            if faults.errors is not None and faults.errors.hits(name, request):
                flag = faults.errors.flag
                with observer.injected(flag, "error"):
                    await context.abort(
                        faults.errors.code,
                        f"injected fault: flag {flag.key} (variant {flag.variant}) fails this call",
                    )
            response = await behavior(request, context)
            if writes and faults.feed_stall is not None:
                # A zero-length span: the moment the write's event was held back, naming the flag.
                with observer.injected(faults.feed_stall.flag, "event held"):
                    pass
            return response

        return rewrap(handler, faulty)
