"""Which purges an answer reflects: the ``CDN-Purge-Seq`` exchange between cache tiers.

Tiers apply a purge independently, so an edge that has applied purge N may refetch from a
shield that has not, and get the bytes N removed. Without more to go on, the edge must store
whatever it fetches within ``purge_grace`` of a matching purge as invalid (``httpcache.store``),
and so every request for a purged object goes upstream for that long. This exchange says when
the doubt is over:

* a tier whose latest logged purge is that recent (``MemoryStore.seq_to_ask``) sends
  ``CDN-Purge-Seq: N`` with its fetch;
* a tier that follows the purge log and answers the field (the shield) waits, at most
  ``WAIT`` seconds, until it has applied every purge up to N, then answers with
  ``CDN-Purge-Seq: S``: its answer reflects every purge of the log up to S (a stored
  response: S is what it has applied; a fetch: what it had applied when the fetch began);
* the asking tier takes purges up to S as reflected (``FetchMark.reflecting``): only the
  others can make the response stored invalid.

An upstream that does not answer the field (the origin, an older shield, a slice of a large
object) says nothing, and the grace rule holds as before. The field never reaches clients:
``client_response_fields`` removes an upstream's and only a tier that was asked adds its own.
"""

from __future__ import annotations

FIELD = "CDN-Purge-Seq"
LOWER = "cdn-purge-seq"
# How long a tier waits to catch up with a purge it was asked about before answering anyway
# (with an S short of N, so the asker keeps its doubt about N): a purge reaches every tier in
# milliseconds through Redis, a catch-up from the log in about a round trip.
WAIT = 1.0


def parse(value: str | None) -> int:
    """The sequence in a field value; 0 when absent or not a plain non-negative integer."""
    if not value:
        return 0
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 18 else 0
