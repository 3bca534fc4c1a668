"""`imaginarynet annotate DIR`: the filter and detector stages on images that already exist.

Real photos included: JPEG, PNG and WebP of any size and mode, EXIF orientation applied, converted
to RGB and written as the same OUT layout (VOC2007/, metadata.jsonl with the source file name, run.json).
Attempt k is the k-th image in sorted file-name order; its class is CLIP's top-1 class with --clip, else
the class of its highest-scoring box. It is kept if CLIP accepts it (with --clip) and it has a box of
that class (with --detector). Ids follow file-name order. Like a generate run, every batch is committed
to the ledger after its images are staged, so a killed run resumes where it stopped; an unreadable
file is listed and skipped.
"""
from __future__ import annotations

import time
from pathlib import Path

from imaginarynet.dataset import Entry, boxes_to_write
from imaginarynet.detectors import create_detector, own_class_hit
from imaginarynet.errors import UserError, load_stage
from imaginarynet.filters import Candidate, create_filter
from imaginarynet.finalize import repair, start_record, write_dataset
from imaginarynet.fsutil import remove_temporaries
from imaginarynet.ledger import Ledger, new_attempt
from imaginarynet.outdir import OutputDir
from imaginarynet.report import finish_report
from imaginarynet.runstate import RunState
from imaginarynet.work import stage_images

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def list_images(source: Path) -> list[Path]:
    source = Path(source)
    if not source.is_dir():
        raise UserError(f"annotate: {source} is not a folder")
    files = sorted((p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: p.name)
    if not files:
        raise UserError(f"annotate: {source} holds no JPEG, PNG or WebP image")
    return files


def load_image(path: Path):
    """RGB, EXIF orientation applied; None if the file cannot be decoded."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "P"):  # transparent pixels become white, not black
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def run_annotate(cfg, log=print) -> dict:
    """Returns {"kept", "images", "unreadable": [names], "table": rows}."""
    files = list_images(Path(cfg.source))
    out = OutputDir(cfg.outputdir)
    state = RunState(out)
    with state.locked():
        if note := state.settle():
            log(note)
        previous = state.open_for(cfg)
        if previous and previous.get("status") == "complete":
            kept = previous["counts"]["kept"]
            finish_report(cfg.report, out.root, f"annotation already complete ({kept} images)", log)
            return {"kept": previous["counts"]["kept"], "images": len(files), "unreadable": [], "table": [],
                    "already_done": True}
        remove_temporaries(out.root)
        started = time.time()
        run_record = start_record(cfg)
        state.write(run_record)
        ledger = Ledger(out.ledger)
        repair(out, ledger, log)
        done = {r["k"] for r in ledger.records}
        todo = [k for k in range(len(files)) if k not in done]
        described = {}
        if todo:
            described = _annotate(cfg, out, ledger, files, todo)
        records = sorted(ledger.records, key=lambda r: r["k"])
        entries = _entries(cfg, records)
        labels = [c.label for c in cfg.classes]
        problems = write_dataset(out, entries, labels)
        table = _table(labels, records)
        unreadable = [r["source"] for r in records if r["status"] == "unreadable"]
        run_record.update(status="complete", models=described or (previous or {}).get("models", {}),
                          counts={"kept": len(entries), "target": len(files), "attempts": len(records)},
                          per_class=table, shortfalls=[], unreadable=unreadable, check=problems or "ok",
                          seconds=round(time.time() - started, 2))
        state.write(run_record)
    if problems:
        raise UserError(f"the written dataset fails its check:\n{problems}")
    if cfg.report:
        from imaginarynet.report import write_report

        write_report(out.root)
    return {"kept": len(entries), "images": len(files), "unreadable": unreadable, "table": table}


def _annotate(cfg, out: OutputDir, ledger: Ledger, files: list[Path], todo: list[int]) -> dict:
    from tqdm import tqdm

    flt, det = create_filter(cfg), create_detector(cfg)
    if flt is not None:
        load_stage(flt, f"CLIP filter ({cfg.clip_model}, {cfg.clip_pretrained})")
    if det is not None:
        load_stage(det, f"detector {cfg.detector!r}")
    labels = [c.label for c in cfg.classes]
    bar = tqdm(total=len(files), initial=len(files) - len(todo), unit="img", desc="annotated", disable=cfg.quiet)
    for start in range(0, len(todo), cfg.batch_size):
        batch = todo[start:start + cfg.batch_size]
        images = {k: load_image(files[k]) for k in batch}
        readable = [k for k in batch if images[k] is not None]
        candidates = [Candidate(images[k], 0, labels[0], k, "") for k in readable]
        verdicts = dict(zip(readable, flt.classify(candidates))) if flt is not None else {}
        boxes = dict(zip(readable, det.detect(candidates))) if det is not None else {}
        records, writes = [], []
        for k in batch:
            name = files[k].name
            if images[k] is None:
                records.append(dict(new_attempt("", k, None, None, "unreadable"), source=name))
                continue
            label, status, reason = _decide(verdicts.get(k), boxes.get(k), det is not None)
            file = out.staged_rel(label, k) if status == "kept" else None
            rec = new_attempt(label, k, None, None, status, verdicts.get(k), file, images[k].size,
                              boxes=boxes.get(k), reason=reason)
            records.append(dict(rec, source=name))
            if file:
                writes.append((out.staged(file), images[k]))
        stage_images(writes)
        ledger.append_batch(records)
        bar.update(len(batch))
    bar.close()
    described = {}
    if flt is not None:
        described["filter"] = flt.describe()
    if det is not None:
        described["detector"] = det.describe()
    return described


def _decide(verdict: dict | None, boxes: list[dict] | None, detecting: bool) -> tuple[str, str, str | None]:
    """(class, status, reason) of an existing image."""
    if verdict is not None:
        label = verdict["top1"]
        if not verdict["accepted"]:
            return label, "rejected", None
    else:
        if not boxes:
            return "", "rejected", "no box"
        label = max(boxes, key=lambda b: b["score"])["label"]
    if detecting and not own_class_hit(boxes or [], label):
        return label, "rejected", "no box"
    return label, "kept", None


def _entries(cfg, records: list[dict]) -> list[Entry]:
    names = {c.label: c.name for c in cfg.classes}
    entries = []
    for rec in records:
        if rec["status"] != "kept":
            continue
        boxes = rec.get("boxes")
        entries.append(Entry(id=f"{len(entries) + 1:06d}", label=rec["class"], name=names[rec["class"]], k=rec["k"],
                             prompt=None, seed=None, width=rec["width"], height=rec["height"], staged=rec["file"],
                             score=rec.get("score"), boxes=boxes_to_write(rec, cfg.label_other_detections),
                             detections=None if boxes is None else tuple(boxes), source=rec["source"]))
    return entries


def _table(labels: list[str], records: list[dict]) -> list[dict]:
    rows = []
    for label in labels:
        mine = [r for r in records if r["class"] == label]
        kept = sum(r["status"] == "kept" for r in mine)
        rows.append({"class": label, "target": kept, "kept": kept, "attempts": len(mine),
                     "acceptance": round(kept / len(mine), 4) if mine else None,
                     "no_box": sum(r.get("reason") == "no box" for r in mine)})
    return rows
