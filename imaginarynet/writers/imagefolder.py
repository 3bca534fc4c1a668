"""Hugging Face imagefolder: images plus metadata.jsonl (file_name + label columns), so
`datasets.load_dataset("imagefolder", data_dir=...)` reads it. Images are hard links. A scenes dataset
(--objects-per-image above 1) adds a `labels` list column: every image-level label, the primary first."""
from __future__ import annotations

import json
from pathlib import Path

from imaginarynet.dataset import row_labels
from imaginarynet.fsutil import atomic_write_text, place_file
from imaginarynet.reader import Item


def write_imagefolder(items: list[Item], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for it in items:
        dst = folder / it.path.name
        if not dst.exists():
            place_file(it.path, dst)
        clip = it.meta.get("clip") or {}
        row = {"file_name": it.path.name, "label": it.label, "name": it.meta.get("name", it.label),
               "prompt": it.meta["prompt"], "seed": it.meta["seed"], "attempt": it.meta["attempt"],
               "clip_prob": clip.get("prob"), "clip_cos": clip.get("cos")}
        if "labels" in it.meta:  # a scenes dataset: every image-level label (the column is in every row)
            row["labels"] = row_labels(it.meta)
        rows.append(row)
    atomic_write_text(folder / "metadata.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return folder
