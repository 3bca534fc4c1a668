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
from dataclasses import dataclass

from imaginarynet.errors import UserError
from imaginarynet.filters.options import FilterOptions
from imaginarynet.fsutil import atomic_write_bytes
from imaginarynet.options import StageOptions, option
from imaginarynet.outdir import OutputDir


@dataclass(frozen=True)
class DedupOptions(StageOptions):
    group = "dedup"
    dedup: float | None = option(None, "--dedup", type=float, metavar="T", help=(
        "Reject an image whose CLIP embedding has cosine >= T with an earlier kept image of its class (refilled; "
        "decided in attempt order)."))

    def active(self, cfg) -> bool:
        return self.dedup is not None

    def data_options(self, cfg) -> dict:
        if self.dedup is None:
            return {}
        opts = {"dedup": self.dedup}
        if not cfg.clip:  # the embedder is the CLIP model of --clip-model / --clip-pretrained
            opts.update(clip_model=cfg.clip_model, clip_pretrained=cfg.clip_pretrained)
        return opts

    def check(self, cfg) -> dict:
        if self.dedup is not None:
            if not 0.0 < self.dedup <= 1.0:
                raise UserError(f"--dedup must be within (0, 1] (got {self.dedup})")
            FilterOptions.of(cfg).check_model()
        return {}

    def models(self, cfg) -> list[tuple[str, str, str]]:
        if self.dedup is None or cfg.clip:  # with --clip the filter's model embeds
            return []
        return [("dedup embedder", f"{cfg.clip_model} / {cfg.clip_pretrained}", "open_clip")]


def write_embedding(out: OutputDir, label: str, k: int, vector) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(vector, dtype=np.float32))
    atomic_write_bytes(out.embedding(label, k), buf.getvalue())


class DedupJudge:
    def __init__(self, out: OutputDir, threshold: float):
        self.out, self.threshold = out, threshold
        self.kept: dict[str, list] = {}

    def accept(self, label: str, k: int) -> bool:
        """Called once per passing attempt, in attempt order within each class."""
        import numpy as np

        vector = np.load(self.out.embedding(label, k))
        kept = self.kept.setdefault(label, [])
        if kept and float(np.max(np.stack(kept) @ vector)) >= self.threshold:
            return False
        kept.append(vector)
        return True
