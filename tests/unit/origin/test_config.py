"""Origin and storage-node configuration: env forms, derived values, clear errors."""

from __future__ import annotations

import pytest

from cdn.settings import ConfigError, load_config
from origin.config import OriginConfig, StorageNodeConfig

NODES = ",".join(f"node-{i}@zone-{'abc'[i % 3]}=http://127.0.0.1:{9100 + i}" for i in range(9))


def _origin(**env: str) -> OriginConfig:
    return load_config(OriginConfig, prefix="CDN_ORIGIN_", section="origin",
                       env={"CDN_ORIGIN_DATABASE_URL": "postgresql://x/y",
                            "CDN_ORIGIN_NODES": NODES, **env})


def test_env_forms_and_derived_values() -> None:
    config = _origin()
    assert len(config.storage_nodes) == 9
    assert config.storage_nodes[0].node_id == "node-0"
    assert config.storage_nodes[0].zone == "zone-a"
    assert config.storage_nodes[0].url == "http://127.0.0.1:9100"
    assert config.fragments_per_segment == 9
    assert config.effective_write_quorum == 7
    assert _origin(CDN_ORIGIN_WRITE_QUORUM="9").effective_write_quorum == 9


def test_database_url_falls_back_to_cdn_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_DATABASE_URL", "postgresql://shared/db")
    config = load_config(OriginConfig, prefix="CDN_ORIGIN_", section="origin",
                         env={"CDN_ORIGIN_NODES": NODES})
    assert config.effective_database_url == "postgresql://shared/db"
    monkeypatch.delenv("CDN_DATABASE_URL")
    with pytest.raises(ConfigError, match="CDN_DATABASE_URL"):
        load_config(OriginConfig, prefix="CDN_ORIGIN_", section="origin",
                    env={"CDN_ORIGIN_NODES": NODES})


@pytest.mark.parametrize(("env", "message"), [
    ({"CDN_ORIGIN_EC_NDATA": "8"}, "9 storage nodes configured but .* 8 \\+ 3 = 11"),
    ({"CDN_ORIGIN_WRITE_QUORUM": "5"}, "write_quorum 5"),
    ({"CDN_ORIGIN_EC_TYPE": "nope"}, "erasure scheme nope"),
    ({"CDN_ORIGIN_NODES": "node-1=http://x"}, "node-id@zone"),
    ({"CDN_ORIGIN_NODES": NODES + ",node-9@zone-a=ftp://x"}, "http"),
    ({"CDN_ORIGIN_SEGMENT_SIZE": "10"}, "segment_size 10"),
    ({"CDN_ORIGIN_PORT": "http"}, "expected int"),
])
def test_invalid_origin_config(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _origin(**env)


def test_storage_node_config() -> None:
    config = load_config(StorageNodeConfig, prefix="CDN_NODE_", section="storage_node",
                         env={"CDN_NODE_NODE_ID": "n7", "CDN_NODE_FSYNC": "false"})
    assert config.fsync is False
    assert str(config.volumes_path) == ".cdn-data/nodes/n7/volumes"
    assert config.volume_max_bytes == 1 << 30
    with pytest.raises(ConfigError):
        StorageNodeConfig(node_id="a/b")
    with pytest.raises(ConfigError):
        StorageNodeConfig(volume_max_bytes=10)
