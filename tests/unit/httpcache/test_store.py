"""The memory tier: byte bound, S3-FIFO eviction, purge indexes kept in step with eviction."""

from __future__ import annotations

import pytest

from httpcache.headers import Fields
from httpcache.messages import StoredResponse
from httpcache.store import MemoryStore


def entry(key: str, size: int = 100, tags: tuple[str, ...] = ()) -> StoredResponse:
    return StoredResponse(cache_key=key, status=200, headers=Fields(), body=b"x" * size,
                          request_time=0.0, response_time=0.0, surrogate_keys=frozenset(tags))


ONE = entry("/k0").byte_size()  # cost of one 100-byte entry with a 3-character key


def test_byte_bound_evicts_the_oldest_entry_not_read_again() -> None:
    store = MemoryStore(max_bytes=3 * ONE)
    for key in ("/ka", "/kb", "/kc"):
        store.put(entry(key))
    store.get("/ka")  # read again: promoted, /kb is the oldest unread one
    store.put(entry("/kd"))
    assert [k for k in ("/ka", "/kb", "/kc", "/kd") if k in store] == ["/ka", "/kc", "/kd"]
    assert store.current_bytes <= 3 * ONE
    assert store.evictions == 1


def test_peek_does_not_count_as_a_read() -> None:
    store = MemoryStore(max_bytes=2 * ONE)
    store.put(entry("/ka"))
    store.put(entry("/kb"))
    store.peek("/ka")
    store.put(entry("/kc"))
    assert "/ka" not in store and "/kb" in store


def test_replacing_an_entry_keeps_the_byte_count_exact() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    store.put(entry("/ka", size=100))
    store.put(entry("/ka", size=300))
    assert store.current_bytes == entry("/ka", size=300).byte_size() and len(store) == 1


def test_indexes_stay_consistent_under_a_long_random_workload() -> None:
    import random
    rng = random.Random(7)
    store = MemoryStore(max_bytes=20 * ONE)
    for _ in range(3000):
        key = f"/k{rng.randrange(60)}"
        if rng.random() < 0.5:
            store.get(key)
        elif rng.random() < 0.9:
            store.put(entry(key, size=rng.randrange(10, 400), tags=(f"t{rng.randrange(5)}",)))
        else:
            store.purge_tag(f"t{rng.randrange(5)}", soft=rng.random() < 0.5)
        assert store.current_bytes <= store.max_bytes
    store.check_indexes()


def test_objects_larger_than_the_limit_are_not_stored() -> None:
    store = MemoryStore(max_bytes=10 * ONE, max_object_bytes=150)
    assert not store.put(entry("/big", size=1000))
    assert "/big" not in store
    assert store.fits(150) and not store.fits(151)


def test_replacing_an_entry_reindexes_its_tags() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    store.put(entry("/a", tags=("old",)))
    store.put(entry("/a", tags=("new",)))
    assert store.keys_for_tag("old") == set() and store.keys_for_tag("new") == {"/a"}
    store.check_indexes()


def test_tag_index_stays_consistent_after_eviction() -> None:
    store = MemoryStore(max_bytes=3 * ONE)
    for i in range(10):
        store.put(entry(f"/k{i}", tags=("all", f"t{i % 3}")))
    store.check_indexes()
    assert len(store.keys_for_tag("all")) == 3
    assert store.keys_for_tag("all") == {"/k7", "/k8", "/k9"}
    assert store.keys_for_tag("t0") == {"/k9"}
    assert store.keys_for_tag("t1") == {"/k7"}


def test_purge_by_tag_removes_exactly_the_tagged_keys() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    store.put(entry("/a", tags=("red",)))
    store.put(entry("/b", tags=("red", "blue")))
    store.put(entry("/c", tags=("blue",)))
    result = store.purge_tag("red")
    assert result.removed == 2
    assert "/c" in store and "/a" not in store and "/b" not in store
    store.check_indexes()


def test_purge_by_url_covers_every_query_of_a_path() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    for key in ("/b/k", "/b/k?v=1", "/b/k?v=2", "/b/kk"):
        store.put(entry(key))
    assert store.purge_url("/b/k?v=1").removed == 1
    assert store.purge_url("/b/k").removed == 2
    assert "/b/kk" in store and len(store) == 1
    store.check_indexes()


def test_purge_by_prefix() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    for key in ("/b/dir/1", "/b/dir/2", "/b/other", "/c/dir/1"):
        store.put(entry(key))
    assert store.purge_prefix("/b/dir/").removed == 2
    assert sorted(k for k in ("/b/other", "/c/dir/1") if k in store) == ["/b/other",
                                                                          "/c/dir/1"]


def test_soft_purge_marks_stale_and_keeps_bytes() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    store.put(entry("/a", tags=("t",)))
    assert store.purge_tag("t", soft=True).invalidated == 1
    kept = store.peek("/a")
    assert kept is not None and kept.invalidated
    assert store.purge_tag("t", soft=True).invalidated == 0  # already stale
    store.check_indexes()


def test_invalid_size_is_refused_with_the_number() -> None:
    with pytest.raises(ValueError, match="-1"):
        MemoryStore(max_bytes=-1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_purge_during_a_fetch_stores_the_response_invalidated() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    since = store.fetch_mark()
    store.purge_tag("red")  # arrives while /ka is being fetched
    store.put(entry("/ka", tags=("red",)), fetched=since)
    store.put(entry("/kb", tags=("blue",)), fetched=since)
    assert store.peek("/ka").invalidated  # type: ignore[union-attr]
    assert not store.peek("/kb").invalidated  # type: ignore[union-attr]


def test_url_and_prefix_purges_during_a_fetch_are_caught_too() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    since = store.fetch_mark()
    store.purge_url("/b/k")
    store.purge_prefix("/c/")
    store.put(StoredResponse("/b/k?x=1", 200, Fields(), b"", 0.0, 0.0), fetched=since)
    store.put(StoredResponse("/c/d", 200, Fields(), b"", 0.0, 0.0), fetched=since)
    store.put(StoredResponse("/b/kk", 200, Fields(), b"", 0.0, 0.0), fetched=since)
    assert store.peek("/b/k?x=1").invalidated  # type: ignore[union-attr]
    assert store.peek("/c/d").invalidated  # type: ignore[union-attr]
    assert not store.peek("/b/kk").invalidated  # type: ignore[union-attr]


def test_forgotten_purge_history_is_assumed_to_match() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    since = store.fetch_mark()
    for i in range(5000):
        store.purge_tag(f"t{i}")
    store.put(entry("/ka"), fetched=since)
    assert store.peek("/ka").invalidated  # type: ignore[union-attr]


def test_purge_just_before_a_fetch_is_suspect_within_the_grace_period() -> None:
    clock = Clock()
    store = MemoryStore(max_bytes=10 * ONE, clock=clock, purge_grace=2.0)
    store.purge_tag("red")  # applied here, maybe not yet at the tier we fetch from
    clock.now += 1.0
    store.put(entry("/ka", tags=("red",)), fetched=store.fetch_mark())
    assert store.peek("/ka").invalidated  # type: ignore[union-attr]
    clock.now += 5.0
    store.put(entry("/kb", tags=("red",)), fetched=store.fetch_mark())
    assert not store.peek("/kb").invalidated  # type: ignore[union-attr]


def test_a_purge_made_long_ago_and_caught_up_now_does_not_taint_new_fetches() -> None:
    # A node (re)starting replays the purge log: those purges reached every tier long ago.
    clock = Clock()
    clock.now = 100.0
    store = MemoryStore(max_bytes=10 * ONE, clock=clock, purge_grace=2.0)
    store.purge_tag("red", age=3600.0)
    clock.now += 0.5
    store.put(entry("/ka", tags=("red",)), fetched=store.fetch_mark())
    assert not store.peek("/ka").invalidated  # type: ignore[union-attr]


def test_purge_dates_never_go_backwards_so_a_recent_purge_is_not_hidden() -> None:
    clock = Clock()
    clock.now = 100.0
    store = MemoryStore(max_bytes=10 * ONE, clock=clock, purge_grace=2.0)
    store.purge_tag("red")  # live, just now
    store.purge_tag("blue", age=3600.0)  # replayed from the log right after
    store.put(entry("/ka", tags=("red",)), fetched=store.fetch_mark())
    assert store.peek("/ka").invalidated  # type: ignore[union-attr]



def logged_purge(store: MemoryStore, seq: int, tag: str) -> None:
    """As ``purge_subscriber.apply_event`` applies event ``seq`` of the purge log."""
    store.begin_purge(seq)
    store.purge_tag(tag)
    store.begin_purge(0)


def test_purges_the_upstream_says_it_reflects_do_not_taint_the_fetch() -> None:
    clock = Clock()
    store = MemoryStore(max_bytes=10 * ONE, clock=clock, purge_grace=2.0)
    logged_purge(store, 5, "red")  # just before the fetch
    since = store.fetch_mark()
    logged_purge(store, 6, "blue")  # during it
    store.purge_tag("green")  # during it, not from the log (an unsafe method's invalidation)
    for key, tag, reflected, invalid in [
            ("/a", "red", 0, True),  # the upstream said nothing: the grace rule
            ("/b", "red", 4, True),  # it reflects purges up to 4 only
            ("/c", "red", 5, False),
            ("/d", "blue", 5, True),
            ("/e", "blue", 6, False),  # it applied 6 before answering, so 6 is in it too
            ("/f", "green", 99, True),  # a purge outside the log is never covered
    ]:
        store.put(entry(key, tags=(tag,)), fetched=since.reflecting(reflected))
        assert store.peek(key).invalidated is invalid, key  # type: ignore[union-attr]


def test_the_purge_to_ask_about_is_the_latest_logged_one_within_the_grace() -> None:
    clock = Clock()
    store = MemoryStore(max_bytes=10 * ONE, clock=clock, purge_grace=2.0)
    assert store.seq_to_ask() == 0
    store.purge_tag("red")  # not from the log: nothing to ask about
    assert store.seq_to_ask() == 0
    logged_purge(store, 7, "red")
    logged_purge(store, 3, "blue")  # a late one caught up after a gap: 7 is still the latest
    assert store.seq_to_ask() == 7
    clock.now += 2.5
    assert store.seq_to_ask() == 0  # every tier has had the time to apply it


def test_a_fetch_mark_carries_the_sequence_applied_without_a_gap() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    assert store.applied_seq == 0 and store.fetch_mark().applied == 0
    store.applied_through(12)
    mark = store.fetch_mark()
    assert mark.applied == 12 and mark.reflected == 0
    assert mark.reflecting(3).reflected == 3 and mark.reflecting(3).reflecting(2).reflected == 3


# -- stored responses kept packed ----------------------------------------------------------


FIELDS = Fields([("Content-Type", "text/plain"), ("ETag", '"v1"'), ("Vary", "a, b"),
                 ("ETag", '"dup"'), ("X-Empty", "")])


def test_stored_fields_read_back_as_given_in_order_with_duplicates() -> None:
    stored = StoredResponse("/k", 200, FIELDS, b"body", 1.0, 2.0, frozenset({"b", "a"}))
    assert stored.headers == FIELDS and list(stored.headers) == list(FIELDS)
    assert stored.headers.get_all("etag") == ['"v1"', '"dup"']
    assert stored.surrogate_keys == frozenset({"a", "b"})
    assert StoredResponse("/k", 200, Fields(), b"", 0.0, 0.0).headers == Fields()


def test_fields_holding_nul_are_kept_unpacked_and_still_read_back() -> None:
    odd = Fields([("X-A", "one\x00two"), ("X-B", "")])
    stored = StoredResponse("/k", 200, odd, b"", 0.0, 0.0)
    assert stored.headers == odd and stored.byte_size() == entry_size(stored, odd)


def entry_size(stored: StoredResponse, fields: Fields) -> int:
    return len(stored.body) + fields.byte_size() + len(stored.cache_key) + 256


def test_byte_size_counts_the_field_lines_as_on_the_wire() -> None:
    stored = StoredResponse("/k", 200, FIELDS, b"body", 1.0, 2.0)
    assert stored.byte_size() == entry_size(stored, FIELDS)


def test_replace_equality_hash_and_pickle_see_the_fields_not_their_packing() -> None:
    import dataclasses
    import pickle
    stored = StoredResponse("/k", 200, FIELDS, b"body", 1.0, 2.0, frozenset({"t"}))
    invalid = dataclasses.replace(stored, invalidated=True)
    assert invalid.invalidated and invalid.headers == FIELDS
    assert invalid.surrogate_keys == {"t"}
    other = dataclasses.replace(stored, headers=Fields([("ETag", '"v2"')]))
    assert other.headers == Fields([("ETag", '"v2"')]) and other != stored
    same = StoredResponse("/k", 200, Fields(list(FIELDS)), b"body", 1.0, 2.0,
                          frozenset({"t"}))
    assert same == stored and hash(same) == hash(stored)
    assert pickle.loads(pickle.dumps(stored)) == stored
    assert "ETag" in repr(stored)


# -- indexes holding one key as the key itself ---------------------------------------------


def test_index_entries_go_from_one_key_to_a_set_and_back() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    store.put(entry("/a", tags=("t",)))
    store.put(entry("/b", tags=("t",)))
    store.check_indexes()
    assert store.keys_for_tag("t") == {"/a", "/b"}
    store.delete("/b")
    store.check_indexes()
    assert store.keys_for_tag("t") == {"/a"}
    assert store.purge_tag("t").removed == 1 and len(store) == 0
    store.check_indexes()


def vary_entry(key: str, accept: str) -> StoredResponse:
    return StoredResponse(key, 200, Fields([("Vary", "Accept")]), b"x", 0.0, 0.0,
                          vary=(("accept", accept),))


def test_variants_of_a_query_key_are_purged_by_their_path() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    store.put(vary_entry("/p?q=1", "text/html"))
    store.put(vary_entry("/p?q=1", "image/png"))
    store.put(vary_entry("/p?q=2", "image/png"))
    store.put(entry("/p"))
    store.check_indexes()
    found, _ = store.lookup("/p?q=1", Fields([("Accept", "image/png")]))
    assert found is not None and found.vary == (("accept", "image/png"),)
    assert store.lookup("/p?q=1", Fields([("Accept", "text/plain")])) == (None, True)
    store.delete_entry(vary_entry("/p?q=2", "image/png").entry_key)
    store.check_indexes()
    assert store.purge_url("/p").removed == 3 and len(store) == 0
    store.check_indexes()


def test_a_response_without_vary_replacing_one_with_vary_is_found_plainly() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    store.put(vary_entry("/v", "text/html"))
    store.delete("/v")
    store.put(entry("/v"))
    assert store.lookup("/v", Fields())[0] is not None
    store.check_indexes()


def test_indexes_stay_consistent_with_variants_queries_and_slices() -> None:
    import random
    rng = random.Random(11)
    store = MemoryStore(max_bytes=25 * ONE)
    keys = ["/a", "/a?x=1", "/a?x=2", "/b", "/b?y", "/c/d"]
    for step in range(4000):
        key = rng.choice(keys)
        roll = rng.random()
        if roll < 0.45:
            vary = (("accept", rng.choice("xyz")),) if rng.random() < 0.4 else ()
            store.put(StoredResponse(
                key, 200, Fields([("Vary", "Accept")] if vary else []), b"x" * rng.randrange(200),
                0.0, 0.0, frozenset({f"t{rng.randrange(3)}"}), vary=vary,
                slot=rng.choice(["", "", "", "rec", "s0"])))
        elif roll < 0.6:
            store.lookup(key, Fields([("Accept", rng.choice("xyz"))]))
        elif roll < 0.7:
            store.delete(key)
        elif roll < 0.8:
            store.purge_url(key.split("?")[0] if rng.random() < 0.5 else key,
                            soft=rng.random() < 0.3)
        elif roll < 0.9:
            store.purge_prefix(rng.choice(["/a", "/b", "/c/", "/"]), soft=rng.random() < 0.3)
        else:
            store.purge_tag(f"t{rng.randrange(3)}", soft=rng.random() < 0.3)
        store.check_indexes()
        assert store.current_bytes <= store.max_bytes, step
    for key in keys:  # every variant, slice and record of a key goes with it
        store.delete(key)
    assert len(store) == 0
    store.check_indexes()


# -- small responses kept as records, and the read memo in front of them -------------------


def test_a_read_is_unpacked_once_and_then_served_from_the_memo() -> None:
    store = MemoryStore(max_bytes=10 * ONE)
    store.put(entry("/a", tags=("t",)))
    first = store.get("/a")
    assert first is not None and first == entry("/a", tags=("t",))
    assert store.get("/a") is first and store.peek("/a") is first
    store.check_indexes()


def test_the_memo_never_outlives_what_it_remembers() -> None:
    store = MemoryStore(max_bytes=20 * ONE)
    store.put(entry("/a", size=100, tags=("t",)))
    read = store.get("/a")
    store.put(entry("/a", size=90, tags=("t",)))  # replaced
    again = store.get("/a")
    assert again is not read and again is not None and len(again.body) == 90
    store.purge_tag("t", soft=True)
    soft = store.get("/a")
    assert soft is not None and soft.invalidated
    for i in range(60):  # read entries all go on to main, where /a is aged out
        store.put(entry(f"/other{i}"))
        store.get(f"/other{i}")
    assert "/a" not in store and store.peek("/a") is None and store.evictions > 0
    store.put(entry("/a", size=80))
    fresh = store.get("/a")
    assert fresh is not None and len(fresh.body) == 80 and not fresh.invalidated
    store.check_indexes()


def test_the_memo_is_bounded_by_the_bodies_it_copied() -> None:
    store = MemoryStore(max_bytes=64 << 20, max_object_bytes=1 << 20)
    for i in range(40):
        store.put(entry(f"/k{i}", size=30_000))
        assert store.get(f"/k{i}") is not None
    assert store._memo_bytes <= store._memo_max_bytes == 2 << 20  # max(1 MiB, 64 MiB / 32)
    assert store._memo_bytes == sum(copied for _, _, copied in store._memo.values())
    store.check_indexes()


def test_a_big_tag_is_pruned_in_bulk_as_its_entries_leave() -> None:
    store = MemoryStore(max_bytes=50 * ONE)
    for i in range(5000):  # 50 fit: each new one evicts an old one carrying the same tag
        store.put(entry(f"/k{i}", tags=("big", f"own{i}")))
    members = store._tags["big"]
    assert not isinstance(members, int) and len(members) <= 2 * len(store) + 2
    assert store.keys_for_tag("big") == set(store._cache.keys())
    assert not any(tag.startswith("own") and store.keys_for_tag(tag) == set()
                   for tag in store._tags)
    held = len(store)
    assert store.purge_tag("big").removed == held > 0
    assert "big" not in store._tags and len(store) == 0
    store.check_indexes()


def test_responses_too_big_to_pack_are_kept_as_they_are() -> None:
    store = MemoryStore(max_bytes=10 << 20, max_object_bytes=1 << 20)
    big = entry("/big", size=100_000, tags=("t",))
    store.put(big)
    assert store.get("/big") is big and store.keys_for_tag("t") == {"/big"}
    store.check_indexes()


def test_small_responses_leave_no_python_objects_behind() -> None:
    """What keeps the overhead near 15% and a full GC pass short at a million objects
    (``bench/cache_scaling.py``): no key string, response or index object per entry."""
    import gc
    import sys
    store = MemoryStore(max_bytes=10 << 20)
    key = "".join(["/b/", "only-here"])  # a new string, not an interned constant
    store.put(entry(key, tags=("shared",)))
    assert sys.getrefcount(key) == 2  # ours and getrefcount's: the store kept bytes
    gc.collect()
    tracked = len(gc.get_objects())
    for i in range(2000):
        store.put(entry(f"/k{i}", tags=("shared", f"g{i // 10}")))
    gc.collect()
    assert len(gc.get_objects()) - tracked < 400  # a response object per entry: > 6,000
    store.check_indexes()
