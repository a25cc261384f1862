"""Roles, ordered: each includes the ones below it."""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    READER = 1  # get, list, subscribe, lookup
    WRITER = 2  # + create, update, batch-create
    ADMIN = 3  # + delete

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r} (known: reader, writer, admin)") from None

    @property
    def label(self) -> str:
        return self.name.lower()
