"""Edge configuration from env/flags, and ``cdn sign``."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from cdn.settings import ConfigError, load_config
from edge.config import EdgeConfig
from edge.sign_cli import main as sign_main
from edge.signing import verify


def test_env_forms_of_shields_keys_and_buckets() -> None:
    config = load_config(EdgeConfig, prefix="CDN_EDGE_", section="edge", env={
        "CDN_EDGE_SHIELDS": "shield-1=http://127.0.0.1:8101,shield-2=http://127.0.0.1:8102",
        "CDN_EDGE_SIGNING_KEYS": "k1=a,k2=b",
        "CDN_EDGE_SIGNED_BUCKETS": "private,media",
        "CDN_EDGE_PORT": "8011"})
    assert config.effective_shields == {"shield-1": "http://127.0.0.1:8101",
                                        "shield-2": "http://127.0.0.1:8102"}
    assert config.signing_keys == {"k1": "a", "k2": "b"}
    assert config.signed_buckets == ("private", "media")
    assert config.port == 8011


def test_upstream_without_shields_goes_direct_and_default_is_local_shield() -> None:
    assert EdgeConfig(upstream="http://127.0.0.1:9000").effective_shields == {}
    assert EdgeConfig().effective_shields == {"shield-1": "http://127.0.0.1:8101"}


@pytest.mark.parametrize("kwargs,message", [
    ({"port": 0}, "0"),
    ({"shields": {"s": "ftp://x"}}, "ftp://x"),
    ({"signed_buckets": ("private",)}, "signing_keys"),
    ({"cache_max_bytes": 10, "max_object_bytes": 20}, "20"),
    ({"slice_size": 1000}, "slice_size .* 1000"),
    ({"slice_size": -1}, "-1"),
])
def test_invalid_config_names_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EdgeConfig(**kwargs)


def test_slice_size_defaults_to_the_origin_segment_size_and_0_turns_it_off() -> None:
    assert EdgeConfig().engine_config("e").slice_size == 1024 * 1024
    assert EdgeConfig(slice_size=0).engine_config("e").slice_size == 0


def test_sign_cli_prints_a_verifiable_url(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_SIGNING_SECRET", "s3cret")
    assert sign_main(["http://127.0.0.1:8001/private/dir/a", "--key-id", "k1",
                      "--expires-in", "60", "--prefix", "/private/dir/",
                      "--client-ip", "10.0.0.1"]) == 0
    url = capsys.readouterr().out.strip()
    parts = urlsplit(url)
    assert verify(parts.path, parts.query, {"k1": "s3cret"}, 0, "10.0.0.1").query == ""


def test_sign_cli_without_secret_fails(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDN_SIGNING_SECRET", raising=False)
    assert sign_main(["/b/k", "--key-id", "k1"]) == 2
    assert "secret" in capsys.readouterr().err
