"""Leak-free train/val/test splits.

Items are joined into components: two items are in one component when they share a ``group``
(a fake and its original) or an ``identity`` (the same person or speaker). A whole component
goes to one split, so no group and no identity is ever in two splits.

A component takes the split the dataset gave its items (``keep_given``), e.g. FaceForensics++'s
official splits. When its items were given different splits (an identity in FF++ val and in a
folder labelled train, say), the most held-out one wins (test > val > train) and the conflict is
reported. Components without a given split are assigned by a seeded hash of their smallest key,
in the given ratios: deterministic, and stable when other items are added.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

SPLITS = ("train", "val", "test")
_RANK = {"train": 0, "val": 1, "test": 2}


class _UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class SplitReport:
    components: int = 0
    kept: int = 0  # components that took a split given by the dataset
    assigned: int = 0  # components assigned by hash
    conflicts: list[dict] = field(default_factory=list)


def _hash_unit(key: str, seed: int) -> float:
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def assign_splits(items: list[dict], ratios: dict[str, float] | None = None, seed: int = 0,
                  keep_given: bool = True) -> tuple[list[str], SplitReport]:
    """Split of every item (dicts with ``id``, ``group``, ``identity``, ``split``)."""
    ratios = ratios or {"train": 0.8, "val": 0.1, "test": 0.1}
    if set(ratios) - set(SPLITS) or abs(sum(ratios.values()) - 1) > 1e-6 or min(ratios.values()) < 0:
        raise ValueError(f"Split ratios must be non-negative, over {SPLITS}, and sum to 1; got {ratios}")
    uf = _UnionFind()
    for it in items:
        node = f"g:{it['group'] or it['id']}"
        uf.find(node)
        if it.get("identity"):
            uf.union(node, f"i:{it['identity']}")
    comp = [uf.find(f"g:{it['group'] or it['id']}") for it in items]
    given: dict[str, set[str]] = {}
    for c, it in zip(comp, items):
        if keep_given and it.get("split") in _RANK:
            given.setdefault(c, set()).add(it["split"])
    report = SplitReport(components=len(set(comp)))
    chosen: dict[str, str] = {}
    for c in sorted(set(comp)):
        if c in given:
            chosen[c] = max(given[c], key=_RANK.get)
            report.kept += 1
            if len(given[c]) > 1:
                report.conflicts.append({"component": c, "given": sorted(given[c]), "chosen": chosen[c]})
        else:
            u, acc = _hash_unit(c, seed), 0.0
            chosen[c] = SPLITS[-1]
            for name in SPLITS:
                acc += ratios.get(name, 0.0)
                if u < acc:
                    chosen[c] = name
                    break
            report.assigned += 1
    return [chosen[c] for c in comp], report


def parse_ratios(text: str) -> dict[str, float]:
    """``"train=0.8,val=0.1,test=0.1"`` -> dict."""
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"Bad split ratio {part!r}; expected NAME=FRACTION, e.g. train=0.8") from None
    return out
