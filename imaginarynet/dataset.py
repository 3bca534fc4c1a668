"""The dataset as a function of the ledger: which attempts are kept and which id each gets.

For every class the first q accepted attempts in attempt order are kept; ids
run 1..N in class-file order, then attempt order (ARCHITECTURE invariant 2).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    id: str  # "000001"
    label: str
    name: str
    k: int
    prompt: str
    seed: int
    width: int
    height: int
    staged: str  # path of the staged JPEG, relative to OUT/.state
    score: dict | None


def select(classes, quotas, by_class: dict[str, list[dict]]) -> list[Entry]:
    entries: list[Entry] = []
    for cls, quota in zip(classes, quotas):
        kept = [r for r in by_class.get(cls.label, []) if r["status"] == "kept"][:quota]
        for rec in kept:
            entries.append(Entry(
                id=f"{len(entries) + 1:06d}", label=cls.label, name=cls.name, k=rec["k"],
                prompt=rec["prompt"], seed=rec["seed"], width=rec["width"], height=rec["height"],
                staged=rec["file"], score=rec.get("score")))
    return entries


def split_ids(ids: list[str]) -> dict[str, list[str]]:
    """trainval = all; train/val alternate, so both are balanced per class and deterministic."""
    ids = sorted(ids)
    return {"trainval": ids, "train": ids[0::2], "val": ids[1::2]}
