"""The dataset as a function of the ledger: which attempts are kept and which id each gets.

For every class the first q accepted attempts in attempt order are kept; ids
run 1..N in class-file order, then attempt order (ARCHITECTURE invariant 2).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    """One image of the dataset, from the ledger to every writer: a kept attempt with its dataset id. Before
    assembly its pixels are the staged JPEG (`staged`); read back from a finished OUT (reader.read_dataset)
    it is a metadata.jsonl row (`entry_of_row`, the inverse of `metadata_row`) and `path` is its VOC JPEG."""

    id: str  # "000001"
    label: str
    name: str
    k: int
    prompt: str
    seed: int
    width: int
    height: int
    staged: str  # path of the staged JPEG, relative to OUT/.state
    score: dict | None
    boxes: tuple | None = None  # with --detector: the boxes to write (own class, or all classes)
    detections: tuple | None = None  # with --detector: every box found
    source: str | None = None  # `annotate`: the file the image came from
    labels: tuple | None = None  # a scene's prompted classes, the primary first (None: one object per image)
    composition: dict | None = None  # `compose`: the background, its crop and every pasted instance
    path: Path | None = None  # read back: the image as written (VOC2007/JPEGImages/<id>.jpg)


def boxes_to_write(rec: dict, label_other: bool) -> tuple | None:
    """A kept attempt's label boxes: its prompted classes', or every class's with --label-other-detections."""
    if "boxes" not in rec:
        return None
    prompted = set(rec.get("labels") or [rec["class"]])
    # a box whose mask failed the quality rules stays in metadata.jsonl's detections, not in the labels
    return tuple(b for b in rec["boxes"] if (label_other or b["label"] in prompted) and "mask_rejected" not in b)


def label_set(label: str, labels=None, boxes=None) -> list[str]:
    """An image's image-level labels as written: the prompted classes (primary first), then the classes of
    other boxes written for it, each once."""
    return list(dict.fromkeys([label, *(labels or ()), *(b["label"] for b in boxes or ())]))


def image_labels(e: Entry) -> list[str]:
    return label_set(e.label, e.labels, e.boxes)


def row_labels(row: dict) -> list[str]:
    """The same for a metadata.jsonl row."""
    return label_set(row["class"], row.get("labels"), row.get("boxes"))


def label_counts(label_lists: list[list[str]], labels: list[str]) -> tuple[dict, dict]:
    """({label: images carrying it}, {label: {other label: images carrying both}}), in class-file order."""
    counts = {a: 0 for a in labels}
    pairs = {a: {b: 0 for b in labels if b != a} for a in labels}
    for present in label_lists:
        for a in present:
            counts[a] += 1
            for b in present:
                if b != a:
                    pairs[a][b] += 1
    return counts, pairs


def select(classes, quotas, by_class: dict[str, list[dict]], label_other: bool = False) -> list[Entry]:
    entries: list[Entry] = []
    for cls, quota in zip(classes, quotas):
        seen: set[int] = set()  # a repeated attempt keeps its first record: one id per attempt
        records = [r for r in by_class.get(cls.label, []) if not (r["k"] in seen or seen.add(r["k"]))]
        kept = [r for r in records if r["status"] == "kept"][:quota]
        for rec in kept:
            entries.append(Entry(
                id=f"{len(entries) + 1:06d}", label=cls.label, name=cls.name, k=rec["k"],
                prompt=rec["prompt"], seed=rec["seed"], width=rec["width"], height=rec["height"],
                staged=rec["file"], score=rec.get("score"), boxes=boxes_to_write(rec, label_other),
                detections=tuple(rec["boxes"]) if "boxes" in rec else None,
                labels=tuple(rec["labels"]) if "labels" in rec else None, composition=rec.get("composition")))
    return entries


def split_ids(ids: list[str]) -> dict[str, list[str]]:
    """trainval = all; train/val alternate, so both are balanced per class and deterministic."""
    ids = sorted(ids)
    return {"trainval": ids, "train": ids[0::2], "val": ids[1::2]}


def metadata_row(e: Entry, file_name: str) -> dict:
    """One line of metadata.jsonl (file_name relative to OUT)."""
    row = {"id": e.id, "file_name": file_name, "class": e.label, "name": e.name, "attempt": e.k,
           "prompt": e.prompt, "seed": e.seed, "width": e.width, "height": e.height, "clip": e.score}
    if e.boxes is not None:  # with --detector only: rows of other runs stay byte for byte what they were
        row["boxes"], row["detections"] = list(e.boxes), list(e.detections)
    if e.source is not None:
        row["source"] = e.source
    if e.labels is not None:  # scenes only: single-object rows stay byte for byte what they were
        row["labels"] = list(e.labels)
    if e.composition is not None:
        row["composition"] = e.composition
    return row


def entry_of_row(row: dict, root: Path) -> Entry:
    """A metadata.jsonl row as the image record it was written from (`root`: the OUT it belongs to)."""
    boxes = row.get("boxes")
    return Entry(id=row["id"], label=row["class"], name=row.get("name", row["class"]), k=row.get("attempt"),
                 prompt=row.get("prompt"), seed=row.get("seed"), width=row["width"], height=row["height"],
                 staged=None, score=row.get("clip"), boxes=None if boxes is None else tuple(boxes),
                 detections=None if boxes is None else tuple(row.get("detections") or ()),
                 source=row.get("source"), labels=tuple(row["labels"]) if "labels" in row else None,
                 composition=row.get("composition"), path=Path(root) / row["file_name"])


def voc_box(box: list[float], width: int, height: int) -> tuple[int, int, int, int]:
    """[x1, y1, x2, y2) in pixels (0-based, exclusive end) as VOC's 1-based inclusive integer corners."""
    x1, y1, x2, y2 = box
    xmin, ymin = min(int(x1) + 1, width), min(int(y1) + 1, height)
    xmax, ymax = max(min(round(x2), width), xmin), max(min(round(y2), height), ymin)
    return xmin, ymin, xmax, ymax


def metadata_text(rows: list[dict]) -> str:
    return "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)


def read_metadata(path: Path) -> list[dict]:
    """The rows of metadata.jsonl, or a one-line error naming the file."""
    from imaginarynet.errors import UserError

    try:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise UserError(f"{path} is missing: run the same generate command again to rewrite it") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is corrupt ({exc}); run the same generate command again to rewrite it") from None
    required = ("id", "file_name", "class", "width", "height")
    if not all(isinstance(r, dict) and all(k in r for k in required) for r in rows):
        raise UserError(f"{path} is corrupt (rows without {', '.join(required)})")
    return rows
