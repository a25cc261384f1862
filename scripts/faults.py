"""Fault flags on the command line (``make faults``, ``make fault``, ``make fault-off``).

    python -m scripts.faults list
    python -m scripts.faults on NAME VARIANT [--replica R]   # R: only that replica (flagd targeting)
    python -m scripts.faults off [NAME]                      # every flag when no NAME

Edits the flag file (``USER_SERVICE_FLAGS_FILE``, by default the one the running stack's replicas
read: ``flags/demo.flagd.json`` unless the stack was started with another) atomically — a new file
renamed over the old one — so a replica never reads half a file; they pick the change up within a
second (``user_service.faults``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts.stack.plan import StackPlan

OFF = "off"


class FlagError(ValueError):
    """A flag or variant the file does not have."""


_EDITING = threading.Lock()  # concurrent stories of one process edit one file in turn


def flags_file() -> Path:
    """USER_SERVICE_FLAGS_FILE, else the file the running stack's replicas read."""
    configured = os.environ.get("USER_SERVICE_FLAGS_FILE")
    return Path(configured) if configured else StackPlan.load().flags_file


def read(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text())
    assert isinstance(document, dict)
    return document


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Reads the file, applies ``change``, writes it back atomically; returns the new document."""
    with _EDITING:
        document = read(path)
        change(document)
        write(document, path)
        return document


def write(document: dict[str, Any], path: Path) -> None:
    """Atomically: readers see the old file or the new one, never a part."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".flags-", delete=False) as temporary:
        json.dump(document, temporary, indent=2)
        temporary.write("\n")
    os.chmod(temporary.name, 0o644)
    os.replace(temporary.name, path)


def turn_on(document: dict[str, Any], name: str, variant: str, replica: str | None = None) -> None:
    flag = _flag(document, name)
    if variant not in flag["variants"]:
        raise FlagError(f"{name} has no variant {variant!r}; it has: {', '.join(flag['variants'])}")
    flag.pop("targeting", None)
    if replica is None:
        flag["defaultVariant"] = variant
    else:
        flag["defaultVariant"] = OFF
        flag["targeting"] = {"if": [{"==": [{"var": "replica"}, replica]}, variant, OFF]}


def turn_off(document: dict[str, Any], name: str | None = None) -> None:
    for key in [name] if name else list(document["flags"]):
        flag = _flag(document, key)
        flag["defaultVariant"] = OFF
        flag.pop("targeting", None)


def describe(document: dict[str, Any]) -> str:
    lines = [f"{'flag':<22} {'in effect':<24} variants"]
    for key, flag in document["flags"].items():
        state = flag["defaultVariant"]
        if "targeting" in flag:
            rule = flag["targeting"]["if"]
            state = f"{rule[1]} on {rule[0]['=='][1]}"
        lines.append(f"{key:<22} {state:<24} {', '.join(v for v in flag['variants'] if v != OFF)}")
    return "\n".join(lines)


def _flag(document: dict[str, Any], name: str) -> dict[str, Any]:
    flags = document["flags"]
    if name not in flags:
        raise FlagError(f"no flag {name!r}; the flags are: {', '.join(flags)}")
    flag = flags[name]
    assert isinstance(flag, dict)
    return flag


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list")
    on = commands.add_parser("on")
    on.add_argument("name")
    on.add_argument("variant")
    on.add_argument("--replica", help="only this replica (its USER_SERVICE_REPLICA name)")
    off = commands.add_parser("off")
    off.add_argument("name", nargs="?")
    args = parser.parse_args()
    path = flags_file()
    try:
        if args.command == "on":
            document = edit(path, lambda d: turn_on(d, args.name, args.variant, args.replica))
        elif args.command == "off":
            document = edit(path, lambda d: turn_off(d, args.name))
        else:
            document = read(path)
    except FlagError as error:
        raise SystemExit(str(error)) from error
    print(f"{path}:")
    print(describe(document), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
