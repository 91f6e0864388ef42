"""Disjoint sets whose root is always the smallest member: near-duplicate families (dedupe) and
joined patient groups (pipeline) both need "which set, named by its best member"."""

from __future__ import annotations

from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)


class MinRootSets(Generic[K]):
    """Union-find with path halving; after `join(a, b)` the root of both is the smaller root.

    Keys are added on first use; they must be comparable (ints, strings). Near-linear time.
    """

    def __init__(self):
        self._parent: dict[K, K] = {}

    def root(self, key: K) -> K:
        parent = self._parent
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def join(self, a: K, b: K) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)
