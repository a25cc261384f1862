"""The UserStore contract. Every backend runs these tests: SQLite, and PostgreSQL on a real
server (a database of its own per test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conftest import OpenStore
from user_service.domain.errors import EmailTakenError, EtagMismatchError, UserNotFoundError
from user_service.domain.models import EventType, NewUser, UserChanges
from user_service.domain.ports import UserStore


@pytest.fixture
async def store(open_store: OpenStore) -> AsyncIterator[UserStore]:
    opened = await open_store()
    yield opened
    await opened.close()


async def test_create_returns_the_event_with_the_new_user(store: UserStore) -> None:
    event = await store.create_user(new_user=NewUser("Ada", "ada@example.com"))
    assert (event.event_id, event.type) == (1, EventType.CREATED)
    assert (event.user.id, event.user.name, event.user.email, event.user.version) == (
        1,
        "Ada",
        "ada@example.com",
        1,
    )
    assert event.user.create_time == event.user.update_time == event.event_time
    assert await store.get_user(user_id=1) == event.user


async def test_ids_are_never_reused_after_delete(store: UserStore) -> None:
    first = await store.create_user(new_user=NewUser("A", "a@example.com"))
    await store.delete_user(user_id=first.user.id, expected_version=None)
    second = await store.create_user(new_user=NewUser("B", "b@example.com"))
    assert second.user.id > first.user.id


async def test_duplicate_email_raises_and_writes_nothing(store: UserStore) -> None:
    await store.create_user(new_user=NewUser("A", "a@example.com"))
    with pytest.raises(EmailTakenError):
        await store.create_user(new_user=NewUser("B", "a@example.com"))
    assert await store.count_users() == 1
    assert await store.last_event_id() == 1


async def test_update_applies_changes_bumps_version_and_appends_event(store: UserStore) -> None:
    created = (await store.create_user(new_user=NewUser("A", "a@example.com"))).user
    event = await store.update_user(user_id=created.id, changes=UserChanges(name="B"), expected_version=1)
    assert (event.type, event.user.name, event.user.email, event.user.version) == (
        EventType.UPDATED,
        "B",
        "a@example.com",
        2,
    )
    assert event.user.update_time >= created.update_time
    assert event.user.create_time == created.create_time
    assert await store.get_user(user_id=created.id) == event.user


async def test_update_with_stale_version_raises_and_changes_nothing(store: UserStore) -> None:
    created = (await store.create_user(new_user=NewUser("A", "a@example.com"))).user
    await store.update_user(user_id=created.id, changes=UserChanges(name="B"), expected_version=None)
    with pytest.raises(EtagMismatchError):
        await store.update_user(user_id=created.id, changes=UserChanges(name="C"), expected_version=1)
    assert (await store.get_user(user_id=created.id)).name == "B"
    assert await store.last_event_id() == 2


async def test_update_to_a_taken_email_raises(store: UserStore) -> None:
    await store.create_user(new_user=NewUser("A", "a@example.com"))
    b = (await store.create_user(new_user=NewUser("B", "b@example.com"))).user
    with pytest.raises(EmailTakenError):
        await store.update_user(
            user_id=b.id, changes=UserChanges(email="a@example.com"), expected_version=None
        )


async def test_missing_users_raise_not_found(store: UserStore) -> None:
    with pytest.raises(UserNotFoundError):
        await store.get_user(user_id=5)
    with pytest.raises(UserNotFoundError):
        await store.update_user(user_id=5, changes=UserChanges(name="x"), expected_version=None)
    with pytest.raises(UserNotFoundError):
        await store.delete_user(user_id=5, expected_version=None)


async def test_delete_removes_the_user_and_records_its_last_state(store: UserStore) -> None:
    created = (await store.create_user(new_user=NewUser("A", "a@example.com"))).user
    with pytest.raises(EtagMismatchError):
        await store.delete_user(user_id=created.id, expected_version=9)
    event = await store.delete_user(user_id=created.id, expected_version=1)
    assert (event.type, event.user) == (EventType.DELETED, created)
    with pytest.raises(UserNotFoundError):
        await store.get_user(user_id=created.id)


async def test_list_users_is_keyset_ordered_and_limited(store: UserStore) -> None:
    for i in range(5):
        await store.create_user(new_user=NewUser(f"U{i}", f"u{i}@example.com"))
    assert [u.id for u in await store.list_users(after_id=0, limit=3)] == [1, 2, 3]
    assert [u.id for u in await store.list_users(after_id=3, limit=3)] == [4, 5]
    assert await store.list_users(after_id=5, limit=3) == []


async def test_events_are_listed_in_commit_order_from_any_point(store: UserStore) -> None:
    created = (await store.create_user(new_user=NewUser("A", "a@example.com"))).user
    await store.update_user(user_id=created.id, changes=UserChanges(name="B"), expected_version=None)
    await store.delete_user(user_id=created.id, expected_version=None)
    events = await store.list_events(after_event_id=0, limit=10)
    assert [(e.event_id, e.type) for e in events] == [
        (1, EventType.CREATED),
        (2, EventType.UPDATED),
        (3, EventType.DELETED),
    ]
    assert [e.event_id for e in await store.list_events(after_event_id=1, limit=1)] == [2]
    assert await store.last_event_id() == 3


async def test_concurrent_writes_get_distinct_increasing_event_ids(store: UserStore) -> None:
    events = await asyncio.gather(
        *(store.create_user(new_user=NewUser(f"U{i}", f"u{i}@example.com")) for i in range(50))
    )
    assert sorted(e.event_id for e in events) == list(range(1, 51))
    assert await store.count_users() == 50


async def test_data_persists_across_reopen(open_store: OpenStore) -> None:
    first = await open_store()
    created = await first.create_user(new_user=NewUser("A", "a@example.com"))
    await first.close()
    second = await open_store()
    try:
        assert await second.get_user(user_id=created.user.id) == created.user
        assert await second.list_events(after_event_id=0, limit=5) == [created]
    finally:
        await second.close()
