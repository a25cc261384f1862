"""Roles, ordered: each includes the ones below it."""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    READER = 1  # get, list, subscribe, lookup
    WRITER = 2  # + create, update, batch-create
    ADMIN = 3  # + delete

    @classmethod
    def parse(cls, name: str) -> Role:
        return cls[name.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


def highest(roles: list[Role]) -> Role | None:
    return max(roles, default=None)
