"""Assembly: the ledger becomes the dataset (select → VOC writer → metadata.jsonl, prompt lists),
then the written dataset is checked the way `imaginarynet check` does."""
from __future__ import annotations

from imaginarynet.check import check_voc, format_problems
from imaginarynet.dataset import Entry, metadata_row, metadata_text, select
from imaginarynet.fsutil import atomic_write_text
from imaginarynet.ledger import Ledger
from imaginarynet.outdir import OutputDir
from imaginarynet.writers.voc import write_voc


def assemble(cfg, out: OutputDir, ledger: Ledger, skip: set | None = None) -> tuple[list[Entry], str]:
    """Write the dataset the ledger defines, less the (label, k) in skip (--dedup's duplicates); returns
    its entries and the check's problems ("" if none)."""
    labels = [c.label for c in cfg.classes]
    by_class = ledger.by_class()
    candidates = {label: [r for r in recs if (label, r["k"]) not in (skip or ())] for label, recs in by_class.items()}
    entries = select(cfg.classes, cfg.quotas, candidates, cfg.label_other_detections)
    write_voc(out, entries, labels)
    atomic_write_text(out.metadata, metadata_text([metadata_row(e, out.image_name(e.id)) for e in entries]))
    for cls in cfg.classes:
        used = "".join(r["prompt"] + "\n" for r in by_class.get(cls.label, []))
        atomic_write_text(out.prompt_list(cls.label), used)
    return entries, format_problems(check_voc(out.root, labels), out.root)


def repair(out: OutputDir, ledger: Ledger, log) -> None:
    """Attempts whose staged image a crash lost or tore run again (same prompt and seed: same dataset)."""
    bad = {(r["class"], r["k"]) for r in ledger.records if r.get("file") and not out.staged_intact(r["file"])}
    if bad:
        log(f"warning: {len(bad)} staged image(s) missing or damaged (a crash?); running those attempts again")
        ledger.drop(bad)
