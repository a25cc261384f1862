"""``user.v1.UserService``: decode -> call the domain -> encode. No business rules here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import aclosing

from user_service.api import decode
from user_service.api.call import (
    Context,
    ResumePoint,
    SubscriptionObserver,
    current_principal,
    resume_point,
    send,
)
from user_service.api.codec import event_message, user_message
from user_service.api.errors import abort_with, status_code_for
from user_service.domain.errors import (
    DomainError,
    EmailTakenError,
    FeedClosedError,
    SubscriberTooSlowError,
    ValidationError,
)
from user_service.domain.feed import ChangeFeed
from user_service.domain.models import UserEvent
from user_service.domain.pagination import PageLimits
from user_service.domain.users import UserDirectory
from user_service.gen.user.v1 import user_pb2, user_pb2_grpc

BatchResult = user_pb2.BatchCreateUsersResponse.Result


class _IgnoreSubscriptions:
    """The observer when telemetry is off: nothing to record."""

    def delivered(self, event: UserEvent, sequence: int) -> None:
        return None

    def ended(self, error: DomainError) -> None:
        return None


class _domain_errors_as_status:  # noqa: N801 - used like the function it replaces
    """``async with``: a domain error raised inside becomes the call's status. A class, not an
    ``@asynccontextmanager``: it runs on every call, and a generator-based one costs a
    generator and several frames per call for the same effect."""

    __slots__ = ("_context",)

    def __init__(self, context: Context) -> None:
        self._context = context

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: object
    ) -> None:
        if isinstance(error, DomainError):
            await abort_with(self._context, error)


class UserServicer(user_pb2_grpc.UserServiceServicer):
    def __init__(
        self,
        directory: UserDirectory,
        feed: ChangeFeed,
        *,
        page_limits: PageLimits,
        max_batch_size: int,
        subscription_observer: SubscriptionObserver | None = None,
    ) -> None:
        self._directory = directory
        self._feed = feed
        self._page_limits = page_limits
        self._max_batch_size = max_batch_size
        self._subscriptions = subscription_observer or _IgnoreSubscriptions()

    async def GetUser(self, request: user_pb2.GetUserRequest, context: Context) -> user_pb2.GetUserResponse:
        async with _domain_errors_as_status(context):
            user = await self._directory.get(decode.user_id(request))
            return user_pb2.GetUserResponse(user=user_message(user))

    async def ListUsers(
        self, request: user_pb2.ListUsersRequest, context: Context
    ) -> user_pb2.ListUsersResponse:
        async with _domain_errors_as_status(context):
            users, next_page_token = await self._directory.list_page(
                decode.page_request(request, self._page_limits)
            )
            return user_pb2.ListUsersResponse(
                users=[user_message(user) for user in users], next_page_token=next_page_token
            )

    async def CreateUser(
        self, request: user_pb2.CreateUserRequest, context: Context
    ) -> user_pb2.CreateUserResponse:
        async with _domain_errors_as_status(context):
            user = await self._directory.create(decode.new_user(request.user))
            return user_pb2.CreateUserResponse(user=user_message(user))

    async def UpdateUser(
        self, request: user_pb2.UpdateUserRequest, context: Context
    ) -> user_pb2.UpdateUserResponse:
        async with _domain_errors_as_status(context):
            user_id, changes, expected_version = decode.user_update(request)
            user = await self._directory.update(user_id, changes, expected_version)
            return user_pb2.UpdateUserResponse(user=user_message(user))

    async def DeleteUser(
        self, request: user_pb2.DeleteUserRequest, context: Context
    ) -> user_pb2.DeleteUserResponse:
        async with _domain_errors_as_status(context):
            await self._directory.delete(*decode.user_deletion(request))
            return user_pb2.DeleteUserResponse()

    async def SubscribeUsers(  # type: ignore[override]  # a writer-style handler: grpc.aio runs both
        self, request: user_pb2.SubscribeUsersRequest, context: Context
    ) -> None:
        """Writes each event itself (rather than yielding it) so that a write blocked on a
        client that stopped reading can be interrupted: the moment the subscriber falls a
        whole buffer behind, ``on_behind`` moves the delivery deadline to now, the blocked
        write is cancelled, and the stream ends with RESOURCE_EXHAUSTED and the resume
        point. Events handed to the transport before that are delivered before the status.
        """
        async with _domain_errors_as_status(context):
            since = decode.since_event_id(request)
            loop = asyncio.get_running_loop()
            delivery = asyncio.timeout(None)
            behind_at: list[int] = []

            def cut_off(position: int) -> None:
                behind_at.append(position)
                delivery.reschedule(loop.time())

            feed = self._feed.events(
                since,
                subscriber=_caller(context),
                on_behind=cut_off,
                # Response headers as soon as the subscription is registered: a client that
                # awaits them knows every write from then on will reach it.
                on_subscribed=lambda: context.send_initial_metadata(()),
            )
            resume = ResumePoint("since_event_id", since)
            resume_point.set(resume)
            delivered = 0
            try:
                async with delivery, aclosing(feed) as events:
                    async for event in events:
                        delivered += 1
                        self._subscriptions.delivered(event, delivered)
                        resume.value = event.event_id
                        await send(context, event_message(event))
            except TimeoutError:
                if not behind_at:
                    raise
                ended: DomainError = SubscriberTooSlowError(self._feed.buffer_size, behind_at[0])
                self._subscriptions.ended(ended)
                raise ended from None
            except (SubscriberTooSlowError, FeedClosedError) as error:
                self._subscriptions.ended(error)
                raise

    async def BatchCreateUsers(
        self, request_iterator: AsyncIterable[user_pb2.CreateUserRequest], context: Context
    ) -> user_pb2.BatchCreateUsersResponse:
        response = user_pb2.BatchCreateUsersResponse()
        async with _domain_errors_as_status(context):
            async for request in request_iterator:
                if len(response.results) == self._max_batch_size:
                    raise ValidationError.single(
                        "requests",
                        f"a batch holds at most {self._max_batch_size} users; the first "
                        f"{self._max_batch_size} were processed ({response.created_count} created)",
                    )
                response.results.append(await self._create_one(request))
                if response.results[-1].HasField("user"):
                    response.created_count += 1
        return response

    async def _create_one(self, request: user_pb2.CreateUserRequest) -> BatchResult:
        try:
            user = await self._directory.create(decode.new_user(request.user))
        except DomainError as error:
            return BatchResult(error=_item_error(error))
        return BatchResult(user=user_message(user))

    async def LookupUsers(
        self, request_iterator: AsyncIterable[user_pb2.GetUserRequest], context: Context
    ) -> AsyncIterator[user_pb2.GetUserResponse]:
        async with _domain_errors_as_status(context):
            async for request in request_iterator:
                user = await self._directory.get(decode.user_id(request))
                yield user_pb2.GetUserResponse(user=user_message(user))


def _caller(context: Context) -> str:
    """Who is subscribing, for the per-caller limit: the token's subject, or with
    authentication off the peer's address (without its port: one host, one caller)."""
    principal = current_principal.get()
    if principal is not None:
        return f"user:{principal.subject}"
    return "peer:" + context.peer().rpartition(":")[0]


def _item_error(error: DomainError) -> user_pb2.ItemError:
    if isinstance(error, ValidationError):
        field = error.violations[0].field
    elif isinstance(error, EmailTakenError):
        field = "user.email"
    else:
        field = ""
    return user_pb2.ItemError(code=status_code_for(error).value[0], message=str(error), field=field)
