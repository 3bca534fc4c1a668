"""--dedup T: near-duplicate removal, decided in attempt order.

Workers store a CLIP image embedding for every attempt that passed the other stages
(.state/embeddings/<label>/<k>.npy, written before the attempt's ledger record leaves the worker).
The scheduler asks `DedupJudge.accept(label, k)` for each such attempt as the class's settled frontier
reaches it, i.e. in attempt order: the attempt is a duplicate if its embedding has cosine >= T with an
earlier accepted image of the same class. So the decision is a function of the attempt sequence alone,
and one worker, several workers, shards and resumed runs keep the same dataset.
"""
from __future__ import annotations

import io

import numpy as np

from imaginarynet.fsutil import atomic_write_bytes
from imaginarynet.outdir import OutputDir


def write_embedding(out: OutputDir, label: str, k: int, vector: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.asarray(vector, dtype=np.float32))
    atomic_write_bytes(out.embedding(label, k), buf.getvalue())


class DedupJudge:
    def __init__(self, out: OutputDir, threshold: float):
        self.out, self.threshold = out, threshold
        self.kept: dict[str, list[np.ndarray]] = {}

    def accept(self, label: str, k: int) -> bool:
        """Called once per passing attempt, in attempt order within each class."""
        vector = np.load(self.out.embedding(label, k))
        kept = self.kept.setdefault(label, [])
        if kept and float(np.max(np.stack(kept) @ vector)) >= self.threshold:
            return False
        kept.append(vector)
        return True
