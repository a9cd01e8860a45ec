import random
from collections import Counter

from loadtests.catalogue import SIZES, Catalogue, body_for


def test_zipf_sampler_is_heavy_tailed_and_in_range():
    catalogue = Catalogue(count=500, zipf_s=1.0)
    draw = catalogue.sampler(random.Random(7))
    counts = Counter(draw() for _ in range(20_000))
    assert set(counts) <= set(range(1, 501))
    # 1/rank: rank 1 is drawn about twice as often as rank 2 and ~10x as often as rank 10.
    assert 1.6 < counts[1] / counts[2] < 2.5
    assert counts[1] > 6 * counts[10]
    # the top 10% of objects take well over half the requests
    top = sum(counts[r] for r in range(1, 51))
    assert top / 20_000 > 0.55


def test_sizes_tags_and_bodies_are_deterministic():
    catalogue = Catalogue(count=100)
    for rank in range(1, 101):
        assert catalogue.size(rank) in SIZES
        assert catalogue.path(rank) == f"/load/{catalogue.key(rank)}"
        assert body_for(rank, catalogue.size(rank)) == body_for(rank, catalogue.size(rank))
        assert len(body_for(rank, catalogue.size(rank))) == catalogue.size(rank)
    assert body_for(1, 64) != body_for(2, 64)
