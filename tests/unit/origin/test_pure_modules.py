"""The pure modules stay pure: no event loop, network, database or clock imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3] / "origin"
PURE = ["erasure.py", "placement.py", "sigv4.py", "layout.py", "errors.py",
        "storagenode/record.py", "api/preconditions.py", "api/names.py", "api/s3xml.py",
        "api/paths.py", "api/object_headers.py", "workers/planning.py", "storage_class.py",
        "ttl_cache.py", "batch_wire.py"]
FORBIDDEN = {"aiohttp", "asyncio", "asyncpg", "time", "socket", "redis"}


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{module} imports {imported & FORBIDDEN}"
