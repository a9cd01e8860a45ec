"""Signed buckets at the edge: refused before any upstream request, stripped after."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from edge.signing import sign_url
from tests.integration.cache.conftest import Topology, metric

KEYS = {"k1": "old-secret", "k2": "new-secret"}


@pytest.fixture
async def signed(make_topology: Callable[..., Awaitable[Topology]]) -> Topology:
    topo = await make_topology(edge={"signing_keys": KEYS, "signed_buckets": ("private",)})
    topo.origin.set("/private/doc", b"secret", headers={"Cache-Control": "max-age=60"})
    topo.origin.set("/public/doc", b"open", headers={"Cache-Control": "max-age=60"})
    return topo


def assert_nothing_went_upstream(topo: Topology) -> None:
    assert topo.origin.count() == 0
    assert metric(topo.shield_app(), "cdn_requests_total", result="miss") == 0
    assert metric(topo.shield_app(), "cdn_requests_total", result="denied") == 0
    assert metric(topo.edge_app, "cdn_upstream_requests_total", method="GET",
                  status="200") == 0


@pytest.mark.parametrize("mangle", [
    lambda u: u.split("?")[0],                                # missing
    lambda u: u.replace("sig=", "sig=x"),                     # tampered signature
    lambda u: u.replace("/private/doc", "/private/other"),    # tampered path
    lambda u: u.replace("kid=k2", "kid=k9"),                  # unknown key
    lambda u: u.replace("kid=k2", "kid=k1"),                  # wrong key
    lambda u: u + "&extra=1",                                 # added parameter
])
async def test_bad_signature_is_403_with_no_upstream_request(signed: Topology, mangle) -> None:  # type: ignore[no-untyped-def]
    url = sign_url("/private/doc", key_id="k2", secret=KEYS["k2"],
                   expires_at=int(signed.clock()) + 60)
    resp, body = await signed.get(mangle(url))
    assert resp.status == 403
    assert body.startswith(b"403 Forbidden: ")
    assert_nothing_went_upstream(signed)
    assert metric(signed.edge_app, "cdn_requests_total", result="denied") == 1


async def test_expired_signature_is_403(signed: Topology) -> None:
    url = sign_url("/private/doc", key_id="k1", secret=KEYS["k1"],
                   expires_at=int(signed.clock()) + 5)
    signed.clock.advance(6)
    resp, body = await signed.get(url)
    assert resp.status == 403 and b"expired" in body
    assert_nothing_went_upstream(signed)


async def test_valid_signature_is_served_and_stripped_from_key_and_upstream(
        signed: Topology) -> None:
    first = sign_url("/private/doc", key_id="k1", secret=KEYS["k1"],
                     expires_at=int(signed.clock()) + 60)
    second = sign_url("/private/doc", key_id="k2", secret=KEYS["k2"],
                      expires_at=int(signed.clock()) + 120)
    resp, body = await signed.get(first)
    assert resp.status == 200 and body == b"secret"
    assert signed.origin.last("/private/doc").target == "/private/doc"
    resp, body = await signed.get(second)  # other key, other expiry: same cache entry
    assert resp.status == 200 and "hit" in resp.headers["Cache-Status"]
    assert signed.origin.count() == 1


async def test_ip_and_prefix_bound_signatures(signed: Topology) -> None:
    signed.origin.set("/private/dir/a", b"A", headers={"Cache-Control": "max-age=60"})
    url = sign_url("/private/dir/a", key_id="k1", secret=KEYS["k1"],
                   expires_at=int(signed.clock()) + 60, client_ip="127.0.0.1",
                   path_prefix="/private/dir/")
    resp, _ = await signed.get(url)
    assert resp.status == 200
    other_ip = sign_url("/private/dir/a", key_id="k1", secret=KEYS["k1"],
                        expires_at=int(signed.clock()) + 60, client_ip="10.9.9.9")
    resp, _ = await signed.get(other_ip)
    assert resp.status == 403
    escaped = url.replace("/private/dir/a", "/private/dir/../doc")
    resp, _ = await signed.get(escaped)
    assert resp.status == 403


async def test_unsigned_buckets_need_no_signature(signed: Topology) -> None:
    resp, body = await signed.get("/public/doc?exp=1")
    assert resp.status == 200 and body == b"open"
    assert signed.origin.last("/public/doc").target == "/public/doc?exp=1"
