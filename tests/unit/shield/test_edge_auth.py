"""Edge → shield HMAC header: sign and verify with the clock passed in."""

from __future__ import annotations

import pytest

from cdn.settings import ConfigError
from shield.config import ShieldConfig
from shield.edge_auth import (
    BadEdgeAuth,
    MalformedEdgeAuth,
    MissingEdgeAuth,
    StaleEdgeAuth,
    sign,
    verify,
)

NOW = 1_700_000_000.0


def test_signed_request_verifies() -> None:
    header = sign("s", "GET", "/b/k?x=1", NOW)
    assert header.startswith(f"{int(NOW)}.")
    verify(header, "s", "GET", "/b/k?x=1", NOW + 10)


def test_missing_and_malformed_headers() -> None:
    with pytest.raises(MissingEdgeAuth):
        verify(None, "s", "GET", "/b/k", NOW)
    for bad in ("abc", "123", ".deadbeef", "12x.deadbeef"):
        with pytest.raises(MalformedEdgeAuth):
            verify(bad, "s", "GET", "/b/k", NOW)


@pytest.mark.parametrize("method,target,secret", [
    ("POST", "/b/k", "s"), ("GET", "/b/other", "s"), ("GET", "/b/k?x=2", "s"),
    ("GET", "/b/k", "wrong")])
def test_signature_binds_method_target_and_secret(method: str, target: str,
                                                  secret: str) -> None:
    header = sign("s", "GET", "/b/k", NOW)
    with pytest.raises(BadEdgeAuth):
        verify(header, secret, method, target, NOW)


def test_timestamp_outside_skew_is_refused_either_way() -> None:
    verify(sign("s", "GET", "/b/k", NOW - 300), "s", "GET", "/b/k", NOW)
    with pytest.raises(StaleEdgeAuth, match="301s"):
        verify(sign("s", "GET", "/b/k", NOW - 301), "s", "GET", "/b/k", NOW)
    with pytest.raises(StaleEdgeAuth):
        verify(sign("s", "GET", "/b/k", NOW + 301), "s", "GET", "/b/k", NOW)


def test_errors_map_to_403() -> None:
    assert MissingEdgeAuth("x").status == 403


def test_shield_config_validates_with_numbers() -> None:
    with pytest.raises(ConfigError, match="70000"):
        ShieldConfig(port=70000)
    with pytest.raises(ConfigError, match="origin"):
        ShieldConfig(origin="127.0.0.1:9000")
    assert ShieldConfig().cache_name == "cdn-shield-1"
