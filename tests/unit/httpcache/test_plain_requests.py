"""``plain_fresh_hit`` is ``decide`` for plain requests: checked over many stored responses,
clocks and configurations, including the boundary second where a response goes stale."""

from __future__ import annotations

import dataclasses
import itertools
import random

from httpcache.dates import format_http_date
from httpcache.headers import Fields
from httpcache.messages import CacheRequest
from httpcache.policy import (
    DECISIVE_REQUEST_FIELDS,
    FreshHit,
    PolicyConfig,
    decide,
    make_stored_response,
    plain_fresh_hit,
)

NOW = 1_700_000_000.0
CACHE_CONTROLS = ["", "max-age=60", "s-maxage=30, max-age=600", "max-age=0", "no-cache",
                  "max-age=60, must-revalidate", "public, max-age=3600",
                  "max-age=10, stale-while-revalidate=30", "private, max-age=60",
                  "no-cache, max-age=60", "max-age=abc", "max-age=5, proxy-revalidate"]
PLAIN_FIELDS = [(), (("Host", "example.com"),),
                (("Host", "h"), ("User-Agent", "wrk"), ("Accept", "*/*"),
                 ("Accept-Encoding", "gzip"), ("Pragma", "no-cache"))]


def stored_responses(rng: random.Random) -> list:
    out = []
    for cc, status in itertools.product(CACHE_CONTROLS, (200, 203, 301, 404, 500)):
        fields = [("Content-Type", "text/plain")]
        if cc:
            fields.append(("Cache-Control", cc))
        if rng.random() < 0.5:
            fields.append(("Date", format_http_date(NOW - rng.choice((0, 3, 40, 500)))))
        if rng.random() < 0.3:
            fields.append(("Age", str(rng.choice((0, 5, 59, 61, 1000)))))
        if rng.random() < 0.3:
            fields.append(("Expires", format_http_date(NOW + rng.choice((-10, 30, 90)))))
        if rng.random() < 0.4:
            fields.append(("Last-Modified", format_http_date(NOW - 86400 * rng.choice((1, 30)))))
        response_time = NOW + rng.choice((0.0, 0.25, 1.5))
        stored = make_stored_response("/b/k", CacheRequest("GET", "/b/k"), status,
                                      Fields(fields), b"x", response_time - 0.01,
                                      response_time)
        out.append(stored)
        out.append(dataclasses.replace(stored, invalidated=True))
    return out


def test_plain_fresh_hit_equals_decide_for_plain_requests() -> None:
    rng = random.Random(6)
    configs = [PolicyConfig(), PolicyConfig(shared=False), PolicyConfig(heuristic_fraction=0.5)]
    compared = fresh = 0
    for stored in stored_responses(rng):
        offsets = [-1.0, 0.0, 0.5, 4.999, 5.0, 9.99, 10.0, 29.5, 30.0, 59.999, 60.0, 60.001,
                   599.0, 3599.0, 3600.0, 86400.0 * 3]
        for config, offset, fields, method in itertools.product(
                configs, offsets, PLAIN_FIELDS, ("GET", "HEAD")):
            request = CacheRequest(method, "/b/k", Fields(fields))
            assert DECISIVE_REQUEST_FIELDS.isdisjoint(k.lower() for k, _ in fields)
            now = stored.response_time + offset
            decision = decide(request, stored, now, config)
            plain = plain_fresh_hit(stored, now, config)
            if type(decision) is FreshHit:
                assert plain == (decision.age, decision.ttl), (stored, offset)
                fresh += 1
            else:
                assert plain is None, (stored, offset, decision)
            compared += 1
    assert compared > 10_000 and 0.1 < fresh / compared < 0.9  # both outcomes well covered


def test_every_request_field_decide_reads_is_decisive() -> None:
    """A request field that changes ``decide``'s answer on a fresh response must be in
    ``DECISIVE_REQUEST_FIELDS``, or the hit path's plain-request shortcut would skip it."""
    stored = make_stored_response(
        "/b/k", CacheRequest("GET", "/b/k"), 200,
        Fields([("Cache-Control", "max-age=60"), ("ETag", '"v1"'),
                ("Last-Modified", format_http_date(NOW - 100))]), b"x", NOW, NOW)
    probes = {"cache-control": "no-cache", "authorization": "Bearer x", "if-match": '"v0"',
              "if-unmodified-since": format_http_date(NOW - 1000)}
    for name, value in probes.items():
        decision = decide(CacheRequest("GET", "/b/k", Fields([(name, value)])), stored, NOW + 1)
        assert type(decision) is not FreshHit, name
        assert name in DECISIVE_REQUEST_FIELDS
    # conditionals and ranges do not change the decision but change the answer (304/206)
    assert {"if-none-match", "if-modified-since", "range", "if-range"} <= DECISIVE_REQUEST_FIELDS
