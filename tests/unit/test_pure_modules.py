"""The modules documented as pure stay pure: no event loop, network, database, cache server
or clock imports (STYLE.md rule 1), in every package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"aiohttp", "asyncio", "asyncpg", "redis", "time", "socket", "multidict"}
PURE = {
    "httpcache": ["cache_control", "policy", "conditional", "ranges", "cache_status",
                  "headers", "dates", "messages", "cache_key", "forwarding", "freshness",
                  "storability", "vary", "validation", "invalidation", "policy_config",
                  "s3fifo", "slices", "records", "field_names"],
    "origin": ["erasure", "placement", "sigv4", "layout", "errors", "storagenode/record",
               "api/preconditions", "api/names", "api/s3xml", "api/paths",
               "api/object_headers", "workers/planning", "storage_class", "ttl_cache",
               "batch_wire", "aws_chunked", "checksums", "multipart", "lifecycle/rules",
               "metadata/volume_memo"],
    "cdn": ["rendezvous", "port_ranges", "metrics_merge"],
}


@pytest.mark.parametrize("path", [f"{package}/{module}.py"
                                  for package, modules in PURE.items() for module in modules])
def test_pure_module_imports_no_io_or_clock(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{path} imports {imported & FORBIDDEN}"
