"""Generated images: one stream per class, attempt k of class c prompted and seeded by (seed, c, k)."""
from __future__ import annotations

from imaginarynet.dataset import Entry, select
from imaginarynet.fsutil import atomic_write_text
from imaginarynet.sources import rejection_columns


class GeneratedSource:
    noun = "run"  # "run already complete"
    count = "kept"  # the progress bar counts kept images toward the quotas

    def __init__(self, cfg):
        self.cfg = cfg
        self.streams = [c.label for c in cfg.classes]
        self.quotas = list(cfg.quotas)
        self.caps = [cfg.max_attempts_for(q) for q in cfg.quotas]

    def stream_of(self, rec: dict) -> str:
        return rec["class"]

    def entries(self, out, by_class: dict[str, list[dict]], skip: set) -> list[Entry]:
        """The first q accepted attempts of each class (less --dedup's duplicates); writes the prompt lists."""
        cfg = self.cfg
        candidates = {label: [r for r in recs if (label, r["k"]) not in skip] for label, recs in by_class.items()}
        for cls in cfg.classes:
            atomic_write_text(out.prompt_list(cls.label), "".join(r["prompt"] + "\n"
                                                                   for r in by_class.get(cls.label, [])))
        return select(cfg.classes, cfg.quotas, candidates, cfg.label_other_detections)

    def table(self, sched, by_class: dict) -> list[dict]:
        return summary_rows(self.streams, sched, by_class if self.cfg.detector else None, bool(self.cfg.segmenter))

    def shortfalls(self, sched) -> list[dict]:
        return sched.shortfalls()

    def extra(self, records: list[dict]) -> dict:
        return {}


def summary_rows(labels: list[str], sched, by_class: dict | None = None, segmenting: bool = False) -> list[dict]:
    """Per-class counts; with by_class (ledger records), also the attempts a detector found no box in (and,
    `segmenting`, those left without a mask)."""
    rows = []
    for i, label in enumerate(labels):
        attempted, quota = sched.attempted[i], sched.quotas[i]
        row = {"class": label, "target": quota, "kept": min(sched.kept[i], quota), "attempts": attempted,
               "acceptance": round(sched.kept[i] / attempted, 4) if attempted else None}
        if by_class is not None:
            row.update(rejection_columns(by_class.get(label, []), segmenting))
        rows.append(row)
    return rows
