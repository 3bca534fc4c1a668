"""Existing images (`imaginarynet annotate DIR`): the filter and detector stages on a folder of images.

Real photos included: JPEG, PNG and WebP of any size and mode, EXIF orientation applied, converted to RGB and
written as the same OUT layout (VOC2007/, metadata.jsonl with the source file name, run.json). Attempt k is the
k-th image in sorted file-name order, all in one stream whose quota and cap are the number of images, so every
image is looked at once. Its class is CLIP's top-1 class with --clip, else the class of its highest-scoring
box; it is kept if CLIP accepts it (with --clip) and it has a box of that class (with --detector). Ids follow
file-name order. An unreadable file is recorded and skipped.
"""
from __future__ import annotations

from pathlib import Path

from imaginarynet.dataset import Entry, boxes_to_write
from imaginarynet.errors import UserError
from imaginarynet.sources import rejection_columns

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
STREAM = "images"  # the one stream of a folder (ledger records keep their decided class)


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


def decide(verdict: dict | None, boxes: list[dict] | None, detecting: bool) -> tuple[str, str, str | None]:
    """(class, status, reason) of an existing image."""
    from imaginarynet.detectors import own_class_hit

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


class FolderSource:
    noun = "annotation"
    count = "attempted"  # the progress bar counts images looked at

    def __init__(self, cfg):
        self.cfg = cfg
        self.files = list_images(Path(cfg.source))
        self.streams = [STREAM]
        self.quotas = self.caps = [len(self.files)]

    def stream_of(self, rec: dict) -> str:
        return STREAM

    def entries(self, out, by_class: dict[str, list[dict]], skip: set) -> list[Entry]:
        names = {c.label: c.name for c in self.cfg.classes}
        records = sorted((r for recs in by_class.values() for r in recs), key=lambda r: r["k"])
        entries = []
        for rec in records:
            if rec["status"] != "kept":
                continue
            boxes = rec.get("boxes")
            entries.append(Entry(id=f"{len(entries) + 1:06d}", label=rec["class"], name=names[rec["class"]],
                                 k=rec["k"], prompt=None, seed=None, width=rec["width"], height=rec["height"],
                                 staged=rec["file"], score=rec.get("score"),
                                 boxes=boxes_to_write(rec, self.cfg.label_other_detections),
                                 detections=None if boxes is None else tuple(boxes), source=rec["source"]))
        return entries

    def table(self, sched, by_class: dict) -> list[dict]:
        rows = []
        for c in self.cfg.classes:
            mine = by_class.get(c.label, [])
            kept = sum(r["status"] == "kept" for r in mine)
            rows.append({"class": c.label, "target": kept, "kept": kept, "attempts": len(mine),
                         "acceptance": round(kept / len(mine), 4) if mine else None,
                         **rejection_columns(mine, bool(self.cfg.segmenter))})
        return rows

    def shortfalls(self, sched) -> list[dict]:
        return []  # a folder has no quota to fall short of: every image is looked at once

    def extra(self, records: list[dict]) -> dict:
        """run.json's list of files that could not be read."""
        return {"unreadable": [r["source"] for r in sorted(records, key=lambda r: r["k"])
                               if r["status"] == "unreadable"]}


def run_batch(cfg, stages, batch: list[tuple[int, int]], timer, out) -> tuple[list[dict], list]:
    """Look at one unit of a folder's images (stream index 0, attempt k = the k-th file): ledger records and
    the images to stage, as work.run_batch does for generated ones."""
    from imaginarynet.filters import Candidate
    from imaginarynet.ledger import new_attempt

    files = stages.files
    labels = [c.label for c in cfg.classes]
    ks = [k for _, k in batch]
    with timer("read"):
        images = {k: load_image(files[k]) for k in ks}
    readable = [k for k in ks if images[k] is not None]
    candidates = [Candidate(images[k], 0, labels[0], k, "") for k in readable]
    verdicts, boxes = {}, {}
    if stages.filter is not None:
        with timer("filter"):
            verdicts = dict(zip(readable, stages.filter.classify(candidates)))
    if stages.detector is not None:
        with timer("detect"):
            boxes = dict(zip(readable, stages.detector.detect(candidates)))
    decided = {k: decide(verdicts.get(k), boxes.get(k), stages.detector is not None) for k in readable}
    if stages.segmenter is not None:
        from imaginarynet.segmenters import every_class_masked, mask_boxes

        hit = [k for k in readable if decided[k][1] == "kept" and boxes.get(k) is not None]
        with timer("segment"):
            masked = mask_boxes(cfg, stages.segmenter, [images[k] for k in hit], [boxes[k] for k in hit],
                                [[decided[k][0]] for k in hit])
        for k, found in zip(hit, masked):
            boxes[k] = found
            if not every_class_masked(found, [decided[k][0]]):
                decided[k] = (decided[k][0], "rejected", "no mask")
    records, writes = [], []
    for k in ks:
        name = files[k].name
        if images[k] is None:
            records.append(dict(new_attempt("", k, None, None, "unreadable"), source=name))
            continue
        label, status, reason = decided[k]
        file = out.staged_rel(label, k) if status == "kept" else None
        records.append(dict(new_attempt(label, k, None, None, status, verdicts.get(k), file, images[k].size,
                                        boxes=boxes.get(k), reason=reason), source=name))
        if file:
            writes.append((out.staged(file), images[k]))
    return records, writes
