"""--shard i/N: slice i of N runs with no coordinator (a SLURM array task each).

Attempts are split in blocks of SHARD_BLOCK; shard i runs the blocks b with
b % N == i, each shard in its own ledger under .state/shards/. Before every unit
a shard reads the other shards' ledgers (a shared filesystem) so that it stops as
soon as the quotas look met. A slice runs through the executor its --devices /
--workers / --engine select, like any run. A finished shard leaves a completion
marker; the last one to finish takes the finalize lock, merges the ledgers and
carries on as a normal run (filling any attempt a sequential run would have
needed), then writes the dataset. `imaginarynet finalize OUT` does the same by hand.
"""
from __future__ import annotations

import json

from imaginarynet.fsutil import atomic_write_text, try_lock
from imaginarynet.ledger import Ledger
from imaginarynet.outdir import OutputDir
from imaginarynet.plan import AttemptScheduler, shard_owner


class ShardScheduler(AttemptScheduler):
    """Issues only this shard's blocks; sees the other shards' finished attempts before each unit."""

    def __init__(self, source, out: OutputDir, i: int, n: int, by_class: dict, accept=None):
        super().__init__(source.quotas, source.caps, source.streams, by_class,
                         owns=lambda c, k: shard_owner(c, k, n) == i, accept=accept, stream_of=source.stream_of)
        # the other slices, and the main ledger (a plain run may have started this dataset)
        self.others = [out.shard_ledger(j, n) for j in range(n) if j != i] + [out.ledger]

    def refresh(self) -> None:
        for path in self.others:
            if path.exists():
                self.record(Ledger(path, read_only=True).records)

    def next_batch(self, size: int):
        self.refresh()
        return super().next_batch(size)


def finish_shard(out: OutputDir, i: int, n: int, attempts: int) -> int | None:
    """Leave this shard's marker. If every marker is there, try to become the assembler: returns the
    held finalize lock (an fd to close when done), else None. The lock is an flock, so a crashed
    assembler never blocks the next one."""
    atomic_write_text(out.shard_marker(i, n), json.dumps({"attempts": attempts}))
    if not all(out.shard_marker(j, n).exists() for j in range(n)):
        return None
    return try_lock(out.finalize_lock, note=f"shard {i}/{n}")


def merge_shard_ledgers(out: OutputDir, main: Ledger) -> int:
    """Append every shard's records the main ledger lacks (idempotent); returns how many."""
    have = {(r["class"], r["k"]) for r in main.records}
    added = 0
    for path in out.shard_ledgers():
        batches: dict[int, list[dict]] = {}  # each shard batch stays one batch: repairs re-run it whole
        for rec in Ledger(path, read_only=True).records:
            if (rec["class"], rec["k"]) not in have:
                have.add((rec["class"], rec["k"]))
                batches.setdefault(rec["b"], []).append({k: v for k, v in rec.items() if k not in ("b", "n")})
        for batch in batches.values():
            main.append_batch(batch)
            added += len(batch)
    return added
