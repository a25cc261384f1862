"""The import directions the project promises, checked by import-linter against the contracts in
pyproject.toml: the service's layers (the domain owns its storage port; nothing below the
composition root reaches up), a domain free of transport, SQL and telemetry libraries, a service
that imports no tooling, and tooling that imports no test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_import_contract_is_kept() -> None:
    result = lint_imports(REPO, [REPO])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_contracts_catch_a_domain_that_imports_grpc_and_a_store(tmp_path: Path) -> None:
    """The same check on a copy of the service whose domain imports grpc and a storage backend
    fails and names both imports: the contracts are not vacuous."""
    copy = tmp_path / "user_service"
    shutil.copytree(REPO / "service/user_service", copy, ignore=shutil.ignore_patterns("__pycache__"))
    users = copy / "domain/users.py"
    users.write_text(
        users.read_text().replace(
            "from __future__ import annotations\n",
            "from __future__ import annotations\n\nimport grpc\n\nfrom user_service.store import sqlite\n",
            1,
        )
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    result = lint_imports(tmp_path, [tmp_path, REPO])  # the copy shadows the installed package
    assert result.returncode != 0
    assert "user_service.domain.users -> user_service.store.sqlite" in result.stdout
    assert "user_service.domain.users -> grpc" in result.stdout
