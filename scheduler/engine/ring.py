"""Consistent-hash ring with virtual nodes and bounded loads, weighted by capacity.

Placement follows Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads"
(2016): walk clockwise from the key's point and take the first worker whose load is below
its capacity ceil((1 + epsilon) * (total + 1) * weight / total weight); with equal weights
that is ceil((1 + epsilon) * (total + 1) / workers). A worker's weight (its slots) also sets
how many points it has, so its share of the ring follows its capacity. Keys keep their
preferred worker while it has room, and no worker ever holds more than its capacity.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable, Iterator

RING_SIZE = 2**64
# Keys whose first owner on the ring is remembered (each step of an order is placed by the
# order's id, so a key comes back once per step); all are forgotten beyond this many.
FIRST_OWNER_CACHE = 65_536


def stable_hash(text: str) -> int:
    """A 64-bit point on the ring that is the same in every process (unlike salted hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def capacity(total_load: int, members: int, epsilon: float, share: float | None = None) -> int:
    """Most tasks one worker may hold once one more task is placed among `members` workers;
    `share` is the worker's part of the total weight (1 / members when all weigh the same)."""
    share = 1 / members if share is None else share
    return max(1, math.ceil((1 + epsilon) * (total_load + 1) * share))


class HashRing:
    """Workers on a ring of 2**64 points, each at `vnodes` pseudo-random places."""

    def __init__(self, vnodes: int = 64):
        self.vnodes = vnodes
        self._points: list[int] = []
        self._owners: list[str] = []
        self._members: set[str] = set()
        self._weights: dict[str, float] = {}
        self._total_weight = 0.0
        # Each member's share, computed once per change of members: a walk over every
        # point (41,000 for 256 workers) took 140 ms, and the dashboard asks twice a second.
        self._shares: dict[str, float] | None = None
        # key -> the owner of the first point clockwise from it, until the members change:
        # a digest per placement was a fifth of the placement's cost.
        self._first: dict[str, str] = {}

    def __contains__(self, member: str) -> bool:
        return member in self._members

    def __len__(self) -> int:
        return len(self._members)

    @property
    def members(self) -> frozenset[str]:
        return frozenset(self._members)

    def add(self, member: str, weight: float = 1.0) -> None:
        """Join with `weight` (relative capacity): weight times `vnodes` points, at most 8x."""
        if member in self._members:
            return
        if not weight > 0:
            raise ValueError("a ring member's weight must be > 0")
        self._members.add(member)
        self._weights[member] = weight
        self._total_weight += weight
        self._shares = None
        self._first.clear()
        for i in range(max(1, min(8 * self.vnodes, round(self.vnodes * weight)))):
            point = stable_hash(f"{member}#{i}")
            at = bisect.bisect_left(self._points, point)
            self._points.insert(at, point)
            self._owners.insert(at, member)

    def remove(self, member: str) -> None:
        if member not in self._members:
            return
        self._members.discard(member)
        self._total_weight -= self._weights.pop(member)
        self._shares = None
        self._first.clear()
        keep = [(p, o) for p, o in zip(self._points, self._owners, strict=True) if o != member]
        self._points = [p for p, _ in keep]
        self._owners = [o for _, o in keep]

    def preference(self, key: str) -> Iterator[str]:
        """Distinct members in clockwise order from the key's point."""
        if not self._points:
            return
        start = bisect.bisect(self._points, stable_hash(key))
        seen: set[str] = set()
        count = len(self._points)
        for i in range(count):
            owner = self._owners[(start + i) % count]
            if owner not in seen:
                seen.add(owner)
                yield owner
                if len(seen) == len(self._members):
                    return

    def lookup(self, key: str) -> str | None:
        """The key's home worker, ignoring load."""
        return next(self.preference(key), None)

    def place(
        self,
        key: str,
        load: Callable[[str], int],
        epsilon: float,
        total: int | None = None,
        eligible: Callable[[str], bool] | None = None,
    ) -> str | None:
        """The first worker clockwise from the key whose load is under the bounded capacity.

        `total` is the members' combined load when the caller keeps count of it; with
        `eligible`, only members it accepts are considered (None if there is none).
        """
        if not self._members:
            return None
        if eligible is not None:
            return self._place_among(key, load, epsilon, total, eligible)
        if total is None:
            total = sum(load(m) for m in self._members)
        members, weights, weight = len(self._members), self._weights, self._total_weight

        def cap(member: str) -> int:
            return capacity(total, members, epsilon, weights[member] / weight)

        # Fast path: the key's home worker usually has room.
        home = self._first_owner(key)
        if load(home) < cap(home):
            return home
        for member in self.preference(key):
            if load(member) < cap(member):
                return member
        # Unreachable: by pigeonhole some member is below the capacity.
        raise AssertionError("bounded-load placement found no worker below capacity")

    def _first_owner(self, key: str) -> str:
        """The owner of the first point clockwise from the key (its home, ignoring load)."""
        owner = self._first.get(key)
        if owner is None:
            if len(self._first) >= FIRST_OWNER_CACHE:
                self._first.clear()
            at = bisect.bisect(self._points, stable_hash(key)) % len(self._points)
            owner = self._first[key] = self._owners[at]
        return owner

    def _place_among(self, key, load, epsilon, total, eligible) -> str | None:
        members = [m for m in self._members if eligible(m)]
        if not members:
            return None
        if total is None:
            total = sum(load(m) for m in members)
        weight = sum(self._weights[m] for m in members)
        first = None
        for member in self.preference(key):
            if not eligible(member):
                continue
            first = first or member
            cap = capacity(total, len(members), epsilon, self._weights[member] / weight)
            if load(member) < cap:
                return member
        return first  # all over their share (the total counted others' load): the key's own

    def shares(self) -> dict[str, float]:
        """Fraction of the ring each member owns (the arc ending at each of its points)."""
        if self._shares is None:
            out = {m: 0.0 for m in self._members}
            for i, point in enumerate(self._points):
                prev = self._points[i - 1] if i else self._points[-1] - RING_SIZE
                out[self._owners[i]] += (point - prev) / RING_SIZE
            self._shares = out
        return dict(self._shares)

    def arcs(self) -> list[tuple[float, float, str]]:
        """(start, end, owner) arcs as fractions of the circle, for drawing the ring."""
        out = []
        for i, point in enumerate(self._points):
            prev = self._points[i - 1] if i else self._points[-1] - RING_SIZE
            out.append((max(prev, 0) / RING_SIZE, point / RING_SIZE, self._owners[i]))
            if prev < 0:
                out.append(((prev + RING_SIZE) / RING_SIZE, 1.0, self._owners[i]))
        return out
