"""Assembly: the ledger becomes the dataset (select → VOC writer → metadata.jsonl, prompt lists),
then the written dataset is checked the way `imaginarynet check` does."""
from __future__ import annotations

import json
import sys

from imaginarynet.check import format_problems
from imaginarynet.dataset import Entry, metadata_row, metadata_text
from imaginarynet.exports import FORMATS, ExportOptions
from imaginarynet.fsutil import atomic_write_text
from imaginarynet.ledger import Ledger
from imaginarynet.outdir import OutputDir
from imaginarynet.runtime import package_versions
from imaginarynet.writers.voc import write_voc


def assemble(cfg, out: OutputDir, ledger: Ledger, source, skip: set | None = None) -> tuple[list[Entry], str]:
    """Write the dataset the ledger defines (the source's selection, less the (label, k) in skip: --dedup's
    duplicates); returns its entries and the check's problems ("" if none)."""
    entries = source.entries(out, ledger.by_class(), skip or set())
    return entries, write_dataset(out, entries, [c.label for c in cfg.classes])


def write_dataset(out: OutputDir, entries: list[Entry], labels: list[str]) -> str:
    """VOC2007/ and metadata.jsonl for these entries, then the check's problems ("" if none)."""
    write_voc(out, entries, labels)
    atomic_write_text(out.metadata, metadata_text([metadata_row(e, out.image_name(e.id)) for e in entries]))
    return format_problems(FORMATS["voc"].check(out.root, ExportOptions()), out.root)


def start_record(cfg) -> dict:
    """run.json of a run that has started: the options and their fingerprint, versions, the command."""
    return {"status": "running", "fingerprint": cfg.fingerprint(), "options": cfg.to_json(),
            "data_options": json.loads(json.dumps(cfg.data_options(), default=str)),
            "versions": package_versions(), "command": sys.argv}


def repair(out: OutputDir, ledger: Ledger, log, redo=None) -> None:
    """Attempts whose staged image a crash lost or tore. With `redo(unit, wanted) -> not redone` (a loaded
    worker's UnitWorker.redo, in (label, k) terms) each damaged attempt's ledger batch runs again as it first
    ran and only the damaged files are rewritten: the bytes an uninterrupted run writes. Without it (or for
    what redo could not bring back) the attempts are dropped from the ledger and run again as new work."""
    bad = {(r["class"], r["k"]) for r in ledger.records if r.get("file") and not out.staged_intact(r["file"])}
    if not bad:
        return
    log(f"warning: {len(bad)} staged image(s) missing or damaged (a crash?); running those attempts again")
    if redo is not None:
        units: dict[int, list[tuple[str, int]]] = {}
        for rec in ledger.records:  # a batch's records are its unit, in the order it ran
            units.setdefault(rec["b"], []).append((rec["class"], rec["k"]))
        lost = set()
        for unit in units.values():
            if wanted := bad.intersection(unit):
                lost |= redo(unit, wanted)
        bad = lost
    if bad:
        ledger.drop(bad)
