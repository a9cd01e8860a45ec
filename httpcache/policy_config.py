"""How a tier applies RFC 9111 where the RFC leaves a choice (pure, frozen)."""

from __future__ import annotations

from dataclasses import dataclass

from httpcache.cache_control import DEFAULT_TARGETED_FIELDS


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Choices the RFCs leave to the cache, with the defaults of our CDN tiers.

    * ``shared``: we are a shared cache (s-maxage, private, Authorization rules apply).
    * ``targeted_fields``: RFC 9213 target list, highest precedence first.
    * ``heuristic_fraction``/``heuristic_max``: §4.2.2 "A typical setting of this fraction
      might be 10%"; capped at a day.
    * ``cache_set_cookie``: store responses that set a cookie, *without* the Set-Cookie field
      (it is never stored, so never served to another client). Off: such responses are not
      stored at all.
    * ``honor_request_cache_control``: obey clients' request directives (§5.2.1: max-age,
      min-fresh, max-stale, no-cache, no-store). On by default, as the RFC describes; a CDN
      operator may switch it off so clients cannot force origin traffic (only-if-cached is
      honoured either way: it can only reduce upstream traffic).
    * ``stale_if_error_default``: how long (seconds) past its freshness a stored response may
      be served when the upstream fails (connection error, timeout, 500/502/503/504) and the
      response carries no ``stale-if-error`` of its own. §4.2.4 allows serving stale when the
      cache "is disconnected"; never when must-revalidate/proxy-revalidate/s-maxage/no-cache
      forbid it. 0 turns it off.
    """

    shared: bool = True
    targeted_fields: tuple[str, ...] = DEFAULT_TARGETED_FIELDS
    heuristic_fraction: float = 0.1
    heuristic_max: float = 86400.0
    cache_set_cookie: bool = True
    honor_request_cache_control: bool = True
    stale_if_error_default: float = 300.0


DEFAULT_POLICY = PolicyConfig()
