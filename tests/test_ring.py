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
