"""Kubernetes JSON schemas for kubeconform, from the kubernetes-validate package (PyPI).

    python -m devkit.k8s_schemas OUT_DIR [--kubernetes-version 1.34.0]

kubeconform fetches its schemas from GitHub by default, which this project cannot reach; the
``kubernetes-validate`` package (pinned in uv.lock) ships the same OpenAPI-derived schemas for
every Kubernetes minor. Its files refer to one shared ``/api/_definitions.json``, which
kubeconform cannot resolve, so each schema is written out *standalone* — with the definitions
it reaches copied in — under kubeconform's own layout:

    OUT_DIR/v1.34.0-standalone-strict/deployment-apps-v1.json

(then ``kubeconform -strict -schema-location OUT_DIR ...``). The strict variants forbid
unknown fields, as a typo in a manifest would be.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # data files only

_REF = re.compile(r'"\$ref": "/api/_definitions\.json#/\$defs/([^"]+)"')  # in a resource's schema
_LOCAL_REF = re.compile(r'"\$ref": "#/\$defs/([^"]+)"')  # between definitions


def source_dir(kubernetes_version: str) -> Path:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = root / f"v{kubernetes_version}-local-strict"
    if not path.is_dir():
        known = sorted(p.name.removesuffix("-local-strict") for p in root.glob("*-local-strict"))
        raise SystemExit(f"no schemas for Kubernetes {kubernetes_version}; kubernetes-validate has {known}")
    return path


def write_standalone(kubernetes_version: str, out_dir: Path) -> Path:
    """Writes every resource schema of that version standalone; returns the version's folder."""
    source = source_dir(kubernetes_version)
    definitions: dict[str, Any] = json.loads((source / "_definitions.json").read_text())["$defs"]
    target = out_dir / f"v{kubernetes_version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.json"):
        if path.name.startswith("_"):
            continue
        text = path.read_text()
        schema = json.loads(_REF.sub(r'"$ref": "#/$defs/\1"', text))
        schema.pop("$id", None)
        schema["$defs"] = {name: definitions[name] for name in _reachable(text, definitions)}
        (target / path.name).write_text(json.dumps(schema))
    return target


def _reachable(text: str, definitions: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    pending = set(_REF.findall(text))
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        pending |= set(_LOCAL_REF.findall(json.dumps(definitions[name])))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--kubernetes-version", default="1.34.0")
    args = parser.parse_args()
    print(write_standalone(args.kubernetes_version, args.out_dir))


if __name__ == "__main__":
    main()
