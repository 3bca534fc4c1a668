"""Quotas per class and per-attempt seeds: pure functions of the run options.

Attempt k of class c always has the same seed, whatever the batch size, worker
count or order of work (ARCHITECTURE invariant 1).
"""
from __future__ import annotations

import hashlib

from imaginarynet.errors import UserError


def split_quota(total: int, n_classes: int) -> list[int]:
    """--num split as evenly as possible; earlier classes get the remainder."""
    base, extra = divmod(total, n_classes)
    return [base + (1 if i < extra else 0) for i in range(n_classes)]


def attempt_seed(run_seed: int, label: str, k: int) -> int:
    """A 31-bit seed, valid for torch.Generator and jax.random.PRNGKey alike."""
    digest = hashlib.sha256(f"{run_seed}\x00{label}\x00{k}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFFFFFF


SHARD_BLOCK = 8  # attempts per block when --shard splits the work


def parse_shard(spec: str) -> tuple[int, int]:
    """--shard "i/N" as (i, N)."""
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise UserError(f"--shard wants i/N, e.g. 0/8 (got {spec!r})") from None
    if not (n >= 1 and 0 <= i < n):
        raise UserError(f"--shard {spec}: need 0 <= i < N")
    return i, n


def shard_owner(class_index: int, k: int, shards: int) -> int:
    """Blocks go round-robin, shifted per class so small quotas still spread over the shards."""
    return (class_index + k // SHARD_BLOCK) % shards


class AttemptScheduler:
    """Decides which attempts (class index, k) to run next, from the ledger's state alone.

    For each class it walks the attempts in order, as a sequential run would,
    counting finished accepted attempts, and counting attempts in flight as if
    they will be accepted; every attempt it passes that has not run yet is
    issued, until the quota would be met or the cap is reached. So the dataset
    (the first q accepted attempts) is the same whatever runs in parallel, and
    attempts missing below the frontier (a worker died) are run first. With one
    worker nothing is in flight when a batch is chosen: the choice depends only
    on completed batches, and a resumed run issues exactly the batches an
    uninterrupted run would have.

    `owns(i, k)` restricts what this scheduler may issue (a --shard's blocks);
    attempts it does not own and that have not finished count as in flight.
    `accept(label, k)`, asked once per passing attempt as the settled frontier
    reaches it (so in attempt order), may still turn it down (--dedup).

    `labels` name the streams; a ledger record belongs to the stream `stream_of(record)` names (its class,
    unless the source says otherwise: a folder's images are one stream whatever class they turn out to be).
    """

    def __init__(self, quotas: list[int], caps: list[int], labels: list[str], by_class: dict, owns=None,
                 accept=None, stream_of=None):
        self.quotas, self.caps, self.labels = quotas, caps, labels
        self.stream_of = stream_of or (lambda rec: rec["class"])
        self.owns = owns or (lambda i, k: True)
        self.accept = accept  # accept(label, k): a last say on a passing attempt, asked in attempt order
        self.duplicates: list[list[int]] = [[] for _ in labels]
        n = len(labels)
        self.status = [dict() for _ in range(n)]  # k -> accepted, for finished attempts
        self.inflight = [set() for _ in range(n)]
        self.settled = [0] * n  # every attempt below this has finished...
        self.settled_kept = [0] * n  # ...and this many of them were accepted
        self.index = {label: i for i, label in enumerate(labels)}
        for recs in by_class.values():
            self.record(recs)

    @property
    def kept(self) -> list[int]:
        return [sum(st.values()) for st in self.status]

    @property
    def attempted(self) -> list[int]:
        return [len(st) for st in self.status]

    def record(self, records) -> None:
        for rec in records:
            i = self.index[self.stream_of(rec)]
            k = rec["k"]
            self.inflight[i].discard(k)
            self.status[i].setdefault(k, rec["status"] == "kept")  # a repeated attempt keeps its first record
            st = self.status[i]
            while self.settled[i] in st:
                j = self.settled[i]
                if st[j] and self.accept is not None and not self.accept(self.labels[i], j):
                    st[j] = False  # --dedup: too close to an earlier kept image of the class
                    self.duplicates[i].append(j)
                self.settled_kept[i] += st[j]
                self.settled[i] += 1

    def wanted(self, i: int, limit: int) -> list[int]:
        """Attempts of class i that a sequential run would still need, not yet running."""
        out: list[int] = []
        count, k = self.settled_kept[i], self.settled[i]
        st, flying = self.status[i], self.inflight[i]
        while count < self.quotas[i] and k < self.caps[i] and len(out) < limit:
            if k in st:
                count += st[k]
            else:
                if k not in flying and self.owns(i, k):
                    out.append(k)
                count += 1  # optimistic: running or to run
            k += 1
        return out

    def next_batch(self, size: int) -> list[tuple[int, int]]:
        """The next attempts to run, marked in flight until record() sees them."""
        batch: list[tuple[int, int]] = []
        for i in range(len(self.labels)):
            for k in self.wanted(i, size - len(batch)):
                self.inflight[i].add(k)
                batch.append((i, k))
            if len(batch) == size:
                break
        return batch

    def duplicate_keys(self) -> set[tuple[str, int]]:
        return {(self.labels[i], k) for i, ks in enumerate(self.duplicates) for k in ks}

    def done(self) -> bool:
        return all(not self.inflight[i] and not self.wanted(i, 1) for i in range(len(self.labels)))

    def shortfalls(self) -> list[dict]:
        kept, attempted = self.kept, self.attempted
        return [
            {"class": label, "kept": min(kept[i], self.quotas[i]), "target": self.quotas[i],
             "attempts": attempted[i]}
            for i, label in enumerate(self.labels) if kept[i] < self.quotas[i]
        ]
