import json

import pytest

from cdn.locate import LocateError, find_database_url


def test_flag_then_env_then_topology(tmp_path, monkeypatch):
    (tmp_path / "topology.json").write_text(json.dumps({"database_url": "postgresql://topo"}))
    monkeypatch.delenv("CDN_DATABASE_URL", raising=False)
    assert find_database_url("t", None, str(tmp_path)) == "postgresql://topo"
    monkeypatch.setenv("CDN_DATABASE_URL", "postgresql://env")
    assert find_database_url("t", None, str(tmp_path)) == "postgresql://env"
    assert find_database_url("t", "postgresql://flag", str(tmp_path)) == "postgresql://flag"


def test_nothing_found_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.delenv("CDN_DATABASE_URL", raising=False)
    with pytest.raises(LocateError, match="--database-url"):
        find_database_url("cdn fsck", None, str(tmp_path))
