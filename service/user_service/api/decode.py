"""Request messages to validated domain inputs, naming bad fields as the client sent them."""

from __future__ import annotations

from user_service.domain.models import NewUser, UserChanges
from user_service.domain.pagination import PageLimits, PageRequest
from user_service.domain.validation import FieldChecks
from user_service.gen.user.v1 import user_pb2

_MUTABLE_FIELDS = ("name", "email")


def user_id(request: user_pb2.GetUserRequest) -> int:
    checks = FieldChecks()
    value = checks.positive_id(request.id, "id")
    checks.raise_if_invalid()
    return value


def user_deletion(request: user_pb2.DeleteUserRequest) -> tuple[int, int | None]:
    """The user id and the expected version (from ``etag``)."""
    checks = FieldChecks()
    target_id = checks.positive_id(request.id, "id")
    expected_version = checks.etag(request.etag, "etag")
    checks.raise_if_invalid()
    return target_id, expected_version


def new_user(user: user_pb2.User, field: str = "user") -> NewUser:
    checks = FieldChecks()
    result = NewUser(
        name=checks.name(user.name, f"{field}.name"), email=checks.email(user.email, f"{field}.email")
    )
    checks.raise_if_invalid()
    return result


def page_request(request: user_pb2.ListUsersRequest, limits: PageLimits) -> PageRequest:
    checks = FieldChecks()
    page = PageRequest(
        after_id=checks.page_token(request.page_token, "page_token"),
        size=checks.page_size(request.page_size, "page_size", limits),
    )
    checks.raise_if_invalid()
    return page


def user_update(request: user_pb2.UpdateUserRequest) -> tuple[int, UserChanges, int | None]:
    """The user id, the changes and the expected version (from ``user.etag``)."""
    checks = FieldChecks()
    user = request.user
    target_id = checks.positive_id(user.id, "user.id")
    expected_version = checks.etag(user.etag, "user.etag")
    paths = _update_paths(request, checks)
    changes = UserChanges(
        name=checks.name(user.name, "user.name") if "name" in paths else None,
        email=checks.email(user.email, "user.email") if "email" in paths else None,
    )
    checks.raise_if_invalid()
    return target_id, changes, expected_version


def _update_paths(request: user_pb2.UpdateUserRequest, checks: FieldChecks) -> set[str]:
    """AIP-134: an empty mask means every mutable field that is set; "*" means all of them."""
    paths = list(request.update_mask.paths)
    if not paths:
        implied = {name for name in _MUTABLE_FIELDS if getattr(request.user, name)}
        if not implied:
            checks.add("update_mask", "is empty and the user sets no mutable field (name, email)")
        return implied
    if "*" in paths:
        if len(paths) > 1:
            checks.add("update_mask", '"*" must be the only path')
            return set()
        return set(_MUTABLE_FIELDS)
    unknown = sorted(set(paths) - set(_MUTABLE_FIELDS))
    if unknown:
        shown = ", ".join(repr(path[:40]) for path in unknown[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        checks.add("update_mask", f"names unknown or immutable fields: {shown}{more} (mutable: name, email)")
    return set(paths) & set(_MUTABLE_FIELDS)


def since_event_id(request: user_pb2.SubscribeUsersRequest) -> int | None:
    if not request.HasField("since_event_id"):
        return None
    checks = FieldChecks()
    value = checks.non_negative(request.since_event_id, "since_event_id")
    checks.raise_if_invalid()
    return value
