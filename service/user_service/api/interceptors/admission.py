"""Concurrency budgets: calls beyond their budget get RESOURCE_EXHAUSTED at once.

grpc.aio's own ``maximum_concurrent_rpcs`` counts every call alike, so a caller without
any credentials could fill it with idle reflection streams and lock everyone out —
health checks included. Here each method draws from the budget the RPC table gives it:
the service proper has the large budget; what anyone may call without a token
(reflection, login, health watches) shares a small one of its own; health checks are
never refused, so orchestrators always get an answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from user_service.api.call import Context
from user_service.api.interceptors.wrapping import (
    Handler,
    HandlerWrappingInterceptor,
    behavior_of,
    rewrap,
)
from user_service.api.methods import Budget, RpcMethod


class _InFlight:
    __slots__ = ("count", "limit", "name")

    def __init__(self, name: str, limit: int) -> None:
        self.name, self.limit, self.count = name, limit, 0


class AdmissionInterceptor(HandlerWrappingInterceptor):
    def __init__(self, limits: Mapping[Budget, int]) -> None:
        super().__init__()
        self._budgets = {budget: _InFlight(budget.value, limit) for budget, limit in limits.items()}

    def wrap(self, handler: Any, method: RpcMethod) -> Handler:
        budget = self._budgets.get(method.budget)
        if budget is None:
            return handler  # type: ignore[no-any-return]
        behavior = behavior_of(handler)
        refusal = (
            f"the server is at its limit of {budget.limit} concurrent {budget.name} calls; retry with backoff"
        )

        async def admitted(request: Any, context: Context) -> Any:
            if budget.count >= budget.limit:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
            budget.count += 1
            try:
                return await behavior(request, context)
            finally:
                budget.count -= 1

        return rewrap(handler, admitted)
