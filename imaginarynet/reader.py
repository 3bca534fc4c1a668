"""Reads a finished output directory back as plain records, for exports, proposals and check.

Exports are derived from the VOC dataset plus metadata.jsonl, so they need no model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from imaginarynet.classes import ImageClass
from imaginarynet.errors import UserError


@dataclass(frozen=True)
class Item:
    id: str
    label: str
    width: int
    height: int
    path: Path
    meta: dict


@dataclass
class Dataset:
    root: Path
    classes: list[ImageClass]
    items: list[Item]

    @property
    def images_dir(self) -> Path:
        return self.root / "VOC2007" / "JPEGImages"

    def split(self, name: str) -> list[Item]:
        path = self.root / "VOC2007" / "ImageSets" / "Main" / f"{name}.txt"
        if not path.exists():
            raise UserError(f"no split {name!r}: {path} does not exist")
        by_id = {it.id: it for it in self.items}
        ids = path.read_text().split()
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise UserError(f"{path} lists ids without metadata: {', '.join(missing[:5])}")
        return [by_id[i] for i in ids]


def classes_of(root: Path) -> list[ImageClass]:
    run_json = Path(root) / "run.json"
    if not run_json.exists():
        raise UserError(f"{root} is not an ImaginaryNet output directory (no run.json)")
    run = json.loads(run_json.read_text())
    return [ImageClass(label, name) for label, name in run["options"]["classes"]]


def read_dataset(root: Path) -> Dataset:
    root = Path(root)
    classes = classes_of(root)
    if json.loads((root / "run.json").read_text()).get("status") != "complete":
        raise UserError(f"{root}: the run is not complete; run the same generate command again first")
    items = []
    for line in (root / "metadata.jsonl").read_text().splitlines():
        m = json.loads(line)
        items.append(Item(m["id"], m["class"], m["width"], m["height"], root / m["file_name"], m))
    return Dataset(root, classes, items)
