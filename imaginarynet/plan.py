"""Quotas per class and per-attempt seeds: pure functions of the run options.

Attempt k of class c always has the same seed, whatever the batch size, worker
count or order of work (ARCHITECTURE invariant 1).
"""
from __future__ import annotations

import hashlib


def split_quota(total: int, n_classes: int) -> list[int]:
    """--num split as evenly as possible; earlier classes get the remainder."""
    base, extra = divmod(total, n_classes)
    return [base + (1 if i < extra else 0) for i in range(n_classes)]


def attempt_seed(run_seed: int, label: str, k: int) -> int:
    """A 31-bit seed, valid for torch.Generator and jax.random.PRNGKey alike."""
    digest = hashlib.sha256(f"{run_seed}\x00{label}\x00{k}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFFFFFF


class AttemptScheduler:
    """Decides which attempts (class index, k) to run next, from the ledger's state alone.

    A batch takes, class by class, as many attempts as each class still needs to
    fill its quota, within its attempt cap. Because the choice depends only on
    completed batches, a resumed run issues exactly the batches an uninterrupted
    run would have.
    """

    def __init__(self, quotas: list[int], caps: list[int], labels: list[str], by_class: dict):
        self.quotas, self.caps, self.labels = quotas, caps, labels
        self.next_k = [0] * len(labels)
        self.kept = [0] * len(labels)
        self.attempted = [0] * len(labels)
        self.index = {label: i for i, label in enumerate(labels)}
        for recs in by_class.values():
            self.record(recs)

    def record(self, records) -> None:
        for rec in records:
            i = self.index[rec["class"]]
            self.next_k[i] = max(self.next_k[i], rec["k"] + 1)
            self.attempted[i] += 1
            self.kept[i] += rec["status"] == "kept"

    def need(self, i: int) -> int:
        return max(0, min(self.quotas[i] - self.kept[i], self.caps[i] - self.next_k[i]))

    def next_batch(self, size: int) -> list[tuple[int, int]]:
        batch: list[tuple[int, int]] = []
        for i in range(len(self.labels)):
            take = min(self.need(i), size - len(batch))
            batch.extend((i, self.next_k[i] + j) for j in range(take))
            if len(batch) == size:
                break
        return batch

    def done(self) -> bool:
        return all(self.need(i) == 0 for i in range(len(self.labels)))

    def shortfalls(self) -> list[dict]:
        return [
            {"class": label, "kept": min(self.kept[i], self.quotas[i]), "target": self.quotas[i],
             "attempts": self.attempted[i]}
            for i, label in enumerate(self.labels) if self.kept[i] < self.quotas[i]
        ]
