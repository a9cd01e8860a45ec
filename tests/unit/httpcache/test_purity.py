"""The policy modules stay pure: no I/O libraries, no clock (STYLE.md rule 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import httpcache

PURE = ["cache_control", "policy", "conditional", "ranges", "cache_status", "headers",
        "dates", "messages", "cache_key", "forwarding", "freshness", "storability", "vary",
        "validation", "invalidation", "policy_config", "s3fifo", "slices"]
FORBIDDEN = {"aiohttp", "asyncio", "redis", "time", "socket", "multidict", "asyncpg"}


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io_or_clock(module: str) -> None:
    path = Path(httpcache.__file__).parent / f"{module}.py"
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{module} imports {imported & FORBIDDEN}"
