"""Hugging Face imagefolder: images plus metadata.jsonl (file_name + label columns), so
`datasets.load_dataset("imagefolder", data_dir=...)` reads it. Images are hard links. A scenes dataset
(--objects-per-image above 1) adds a `labels` list column: every image-level label, the primary first.

The `objects` column follows the HF object-detection convention: per image {"id", "area", "bbox" ([x, y, w, h]
pixels), "category" (class index 0..C-1 in class-file order)}, the boxes every other format writes (detector
boxes, or whole-image boxes per label), plus "segmentation" (COCO RLE) when the dataset has masks."""
from __future__ import annotations

import json
from pathlib import Path

from imaginarynet import masks
from imaginarynet.dataset import Entry, image_labels
from imaginarynet.fsutil import atomic_write_text, place_file
from imaginarynet.records import label_boxes


def objects_column(it: Entry, class_index: dict[str, int], masked: bool) -> dict:
    boxes = label_boxes(image_labels(it), it.boxes, it.width, it.height)
    objects = {"id": [], "area": [], "bbox": [], "category": []}
    if masked:
        objects["segmentation"] = []
    for j, b in enumerate(boxes):
        x1, y1, x2, y2 = b.xyxy
        objects["id"].append(j)
        # floats throughout: a column must have one type whether a box came from a mask (whole pixels) or not
        objects["bbox"].append([float(x1), float(y1), round(float(x2 - x1), 2), round(float(y2 - y1), 2)])
        objects["category"].append(class_index[b.label])
        objects["area"].append(float(masks.area(b.mask)) if b.mask else round(float((x2 - x1) * (y2 - y1)), 2))
        if masked:
            objects["segmentation"].append(b.mask)
    return objects


def write_imagefolder(items: list[Entry], folder: Path, labels: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    class_index = {label: i for i, label in enumerate(labels)}
    masked = any("mask" in b for it in items for b in it.boxes or ())
    rows = []
    for it in items:
        dst = folder / it.path.name
        if not dst.exists():
            place_file(it.path, dst)
        clip = it.score or {}
        row = {"file_name": it.path.name, "label": it.label, "name": it.name,
               "prompt": it.prompt, "seed": it.seed, "attempt": it.k,
               "clip_prob": clip.get("prob"), "clip_cos": clip.get("cos")}
        if it.labels is not None:  # a scenes dataset: every image-level label (the column is in every row)
            row["labels"] = image_labels(it)
        row["objects"] = objects_column(it, class_index, masked)
        rows.append(row)
    atomic_write_text(folder / "metadata.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return folder
