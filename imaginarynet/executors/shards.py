"""--shard i/N: slice i of N runs with no coordinator (a SLURM array task each).

Attempts are split in blocks of SHARD_BLOCK; shard i runs the blocks b with
b % N == i, each shard in its own ledger under .state/shards/. Before every batch
a shard reads the other shards' ledgers (a shared filesystem) so that it stops as
soon as the quotas look met. A finished shard leaves a completion marker; the last
one to finish takes the finalize lock, merges the ledgers and carries on as a
normal run (filling any attempt a sequential run would have needed), then writes
the dataset. `imaginarynet finalize OUT` does the same by hand.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from imaginarynet.errors import UserError
from imaginarynet.ledger import Ledger
from imaginarynet.plan import AttemptScheduler, shard_owner


def parse_shard(spec: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise UserError(f"--shard wants i/N, e.g. 0/8 (got {spec!r})") from None
    if not (n >= 1 and 0 <= i < n):
        raise UserError(f"--shard {spec}: need 0 <= i < N")
    return i, n


def shard_dir(state: Path) -> Path:
    return Path(state) / "shards"


def shard_ledger(state: Path, i: int, n: int) -> Path:
    return shard_dir(state) / f"ledger-{i}-of-{n}.jsonl"


def marker(state: Path, i: int, n: int) -> Path:
    return shard_dir(state) / f"done-{i}-of-{n}"


class ShardScheduler(AttemptScheduler):
    """Issues only this shard's blocks; sees the other shards' finished attempts before each batch."""

    def __init__(self, cfg, state: Path, i: int, n: int, by_class: dict):
        caps = [cfg.max_attempts_for(q) for q in cfg.quotas]
        super().__init__(cfg.quotas, caps, [c.label for c in cfg.classes], by_class,
                         owns=lambda c, k: shard_owner(c, k, n) == i)
        self.others = [shard_ledger(state, j, n) for j in range(n) if j != i]

    def refresh(self) -> None:
        for path in self.others:
            if path.exists():
                self.record(Ledger(path, read_only=True).records)

    def next_batch(self, size: int):
        self.refresh()
        return super().next_batch(size)


def finish_shard(state: Path, i: int, n: int, attempts: int) -> bool:
    """Leave this shard's marker; True if this process should assemble the dataset."""
    d = shard_dir(state)
    d.mkdir(parents=True, exist_ok=True)
    marker(state, i, n).write_text(json.dumps({"attempts": attempts}))
    if not all(marker(state, j, n).exists() for j in range(n)):
        return False
    try:  # several shards may see all markers at once: one lock decides
        os.close(os.open(d / "finalize.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def merge_shard_ledgers(state: Path, main: Ledger) -> int:
    """Append every shard's records the main ledger lacks (idempotent); returns how many."""
    have = {(r["class"], r["k"]) for r in main.records}
    added = 0
    for path in sorted(shard_dir(state).glob("ledger-*-of-*.jsonl")):
        new = []
        for rec in Ledger(path, read_only=True).records:
            if (rec["class"], rec["k"]) not in have:
                have.add((rec["class"], rec["k"]))
                new.append({k: v for k, v in rec.items() if k not in ("b", "n")})
        for start in range(0, len(new), 256):
            main.append_batch(new[start:start + 256])
        added += len(new)
    return added
