import math
import os
import subprocess
import sys
from collections import Counter

import pytest

from scheduler.engine.ring import HashRing, capacity, stable_hash

KEYS = [f"o-{i}" for i in range(10_000)]


def ring_of(n: int) -> HashRing:
    ring = HashRing(vnodes=160)
    for i in range(n):
        ring.add(f"w{i}")
    return ring


@pytest.mark.slow
def test_stable_hash_is_the_same_in_another_process_with_another_hash_seed():
    code = "from scheduler.engine.ring import stable_hash; print(stable_hash('o-42'))"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert int(out.stdout) == stable_hash("o-42")


def test_removing_one_of_ten_workers_moves_only_its_keys():
    ring = ring_of(10)
    before = {k: ring.lookup(k) for k in KEYS}
    ring.remove("w3")
    after = {k: ring.lookup(k) for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(before[k] == "w3" for k in moved)
    assert moved == [k for k in KEYS if before[k] == "w3"]
    assert 0.05 * len(KEYS) <= len(moved) <= 0.15 * len(KEYS)


def test_adding_a_worker_moves_keys_only_onto_it():
    ring = ring_of(9)
    before = {k: ring.lookup(k) for k in KEYS}
    ring.add("w-new")
    moved = [k for k in KEYS if ring.lookup(k) != before[k]]
    assert moved and all(ring.lookup(k) == "w-new" for k in moved)
    assert len(moved) <= 0.2 * len(KEYS)


def test_preference_lists_each_member_once_starting_at_the_home_worker():
    ring = ring_of(5)
    prefs = list(ring.preference("o-7"))
    assert prefs[0] == ring.lookup("o-7")
    assert sorted(prefs) == sorted(ring.members)


def test_bounded_loads_never_exceed_ceil_one_point_two_five_times_average():
    ring = ring_of(10)
    load: Counter[str] = Counter()
    for placed, key in enumerate(KEYS):
        worker = ring.place(key, lambda w: load[w], epsilon=0.25)
        load[worker] += 1
        average = (placed + 1) / 10
        assert max(load.values()) <= math.ceil(1.25 * average)


def test_bounded_loads_keep_keys_on_their_home_worker_when_there_is_room():
    ring = ring_of(4)
    home = ring.lookup("o-1")
    assert ring.place("o-1", lambda w: 0, epsilon=0.25) == home


def test_a_full_home_worker_is_passed_over_for_the_next_on_the_ring():
    ring = ring_of(4)
    prefs = list(ring.preference("o-1"))
    loads = {prefs[0]: 10, prefs[1]: 0, prefs[2]: 0, prefs[3]: 0}
    # capacity(10 tasks, 4 workers) = ceil(1.25 * 11 / 4) = 4, so the home worker is full.
    assert capacity(10, 4, 0.25) == 4
    assert ring.place("o-1", loads.__getitem__, epsilon=0.25) == prefs[1]


def test_empty_ring_places_nothing():
    ring = HashRing()
    assert ring.lookup("x") is None and ring.place("x", lambda w: 0, 0.25) is None


def test_shares_cover_the_whole_ring_and_are_roughly_even():
    shares = ring_of(4).shares()
    assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-9)
    assert all(0.15 < s < 0.35 for s in shares.values())


def test_shares_follow_every_join_and_departure_and_cannot_be_changed_from_outside():
    ring = ring_of(4)
    before = ring.shares()
    before["w0"] = 99.0  # a caller's copy
    assert ring.shares()["w0"] < 1.0
    ring.add("w9")
    joined = ring.shares()
    assert set(joined) == {"w0", "w1", "w2", "w3", "w9"} and joined["w9"] > 0.1
    assert math.isclose(sum(joined.values()), 1.0, rel_tol=1e-9)
    ring.remove("w0")
    assert "w0" not in ring.shares()
    assert math.isclose(sum(ring.shares().values()), 1.0, rel_tol=1e-9)


def test_arcs_cover_the_circle_once():
    arcs = ring_of(3).arcs()
    assert math.isclose(sum(end - start for start, end, _ in arcs), 1.0, rel_tol=1e-9)


def test_preference_walks_clockwise_from_the_keys_point():
    ring = HashRing(vnodes=1)
    for member in ("a", "b", "c", "d"):
        ring.add(member)
    for key in KEYS[:50]:
        point = stable_hash(key)
        # Clockwise distance from the key to each member's single point, wrapping at the top.
        expected = sorted(ring.members, key=lambda m: (stable_hash(f"{m}#0") - point) % 2**64)
        assert list(ring.preference(key)) == expected


def test_arcs_tile_the_circle_from_zero_without_gaps():
    arcs = sorted(ring_of(3).arcs())
    assert arcs[0][0] == 0.0 and arcs[-1][1] == 1.0
    assert all(a[1] == b[0] for a, b in zip(arcs, arcs[1:], strict=False))


# -------------------------------------------------------------------------- weights and eligibility


def weighted_ring() -> HashRing:
    ring = HashRing(vnodes=64)
    ring.add("big", weight=3.0)
    ring.add("small", weight=1.0)
    ring.add("other", weight=1.0)
    return ring


def key_preferring(ring: HashRing, first: str, then: str, eligible=None) -> str:
    for key in KEYS:
        prefs = [m for m in ring.preference(key) if eligible is None or eligible(m)]
        if prefs[:2] == [first, then]:
            return key
    raise AssertionError("no such key")


def test_a_capacity_follows_the_members_share_of_the_weight():
    assert capacity(10, 2, 0.25) == 7  # ceil(1.25 * 11 / 2)
    assert capacity(10, 2, 0.25, share=0.75) == 11  # ceil(1.25 * 11 * 0.75)
    assert capacity(0, 4, 0.25) == 1  # never below one


def test_a_heavier_member_gets_more_points_but_at_most_eight_times_its_vnodes():
    ring = HashRing(vnodes=10)
    ring.add("huge", weight=100.0)
    assert len(ring.arcs()) == 8 * 10 + 1  # one arc per point, the first one split in two
    ring.add("tiny", weight=0.01)
    assert len(ring.arcs()) == 8 * 10 + 1 + 1  # at least one point each


@pytest.mark.parametrize("weight", [0, -1.0])
def test_a_member_without_weight_is_refused(weight):
    ring = HashRing()
    with pytest.raises(ValueError, match="^a ring member's weight must be > 0$"):
        ring.add("w1", weight=weight)
    assert "w1" not in ring and len(ring) == 0


def test_a_heavier_home_keeps_its_key_up_to_its_weighted_capacity():
    ring = weighted_ring()
    key = key_preferring(ring, "big", "small")
    # 8 tasks among weights 3:1:1: big's capacity is ceil(1.25 * 9 * 0.6) = 7.
    loads = {"big": 6, "small": 0, "other": 0}
    assert ring.place(key, loads.__getitem__, 0.25, total=8) == "big"
    loads["big"] = 7
    assert ring.place(key, loads.__getitem__, 0.25, total=8) == "small"


def test_placement_counts_the_load_itself_when_the_caller_does_not_keep_a_total():
    ring = ring_of(2)
    key = KEYS[0]
    home, second = list(ring.preference(key))
    loads = {home: 3, second: 0}
    # total 3: capacity ceil(1.25 * 4 / 2) = 3, so the home is full.
    assert ring.place(key, loads.__getitem__, 0.25) == second
    assert ring.place(key, loads.__getitem__, 0.25, total=30) == home


def test_placement_among_eligible_members_skips_the_others_even_the_keys_home():
    ring = weighted_ring()
    eligible = {"small", "other"}.__contains__
    key = key_preferring(ring, "big", "small")
    assert ring.place(key, lambda m: 0, 0.25, eligible=eligible) == "small"
    assert ring.place(key, lambda m: 0, 0.25, eligible=lambda m: False) is None


def test_placement_among_eligible_members_uses_their_weights_and_load():
    ring = weighted_ring()
    eligible = {"big", "small"}.__contains__
    key = key_preferring(ring, "big", "small", eligible)
    # Among big (3) and small (1), big's share is 0.75: with the caller's total of 8,
    # its capacity is ceil(1.25 * 9 * 0.75) = 9.
    loads = {"big": 8, "small": 2, "other": 50}
    assert ring.place(key, loads.__getitem__, 0.25, total=8, eligible=eligible) == "big"
    loads["big"] = 9
    assert ring.place(key, loads.__getitem__, 0.25, total=8, eligible=eligible) == "small"
    # Without a total, the eligible members' own load counts: 9 + 2, so big's capacity
    # is ceil(1.25 * 12 * 0.75) = 12.
    assert ring.place(key, loads.__getitem__, 0.25, eligible=eligible) == "big"


def test_placement_among_eligible_members_all_over_their_share_falls_back_to_the_keys_own():
    ring = weighted_ring()
    eligible = {"small", "other"}.__contains__
    key = key_preferring(ring, "big", "other")
    loads = {"big": 0, "small": 5, "other": 5}
    # The caller's total (0) counted none of their load: both are over capacity 1.
    assert ring.place(key, loads.__getitem__, 0.25, total=0, eligible=eligible) == "other"


def test_placement_follows_every_join_and_departure_though_it_remembers_each_keys_home():
    ring = ring_of(9)
    plenty = len(KEYS)  # room everywhere: each key goes to its home
    before = {k: ring.place(k, lambda m: 0, 0.25, plenty) for k in KEYS}
    assert before == {k: ring.lookup(k) for k in KEYS}
    ring.add("w-new")
    after = {k: ring.place(k, lambda m: 0, 0.25, plenty) for k in KEYS}
    assert after == {k: ring.lookup(k) for k in KEYS} and "w-new" in after.values()
    ring.remove("w-new")
    assert {k: ring.place(k, lambda m: 0, 0.25, plenty) for k in KEYS} == before


def test_the_remembered_homes_are_bounded(monkeypatch):
    import scheduler.engine.ring as ring_module

    monkeypatch.setattr(ring_module, "FIRST_OWNER_CACHE", 100)
    ring = ring_of(5)
    placed = [ring.place(k, lambda m: 0, 0.25, 10_000) for k in KEYS[:101]]
    assert placed == [ring.lookup(k) for k in KEYS[:101]]
    assert len(ring._first) == 1  # the 101st key found 100 remembered: all forgotten


def test_a_key_placed_again_is_not_hashed_again(monkeypatch):
    import scheduler.engine.ring as ring_module

    ring = ring_of(5)
    hashed: list[str] = []
    monkeypatch.setattr(ring_module, "stable_hash",
                        lambda text: hashed.append(text) or stable_hash(text))
    homes = [ring.place(k, lambda m: 0, 0.25, 10_000) for k in ("o-1", "o-2", "o-1", "o-1")]
    assert hashed == ["o-1", "o-2"] and homes[0] == homes[2] == homes[3] == ring.lookup("o-1")
