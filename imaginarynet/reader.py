"""Reads a finished output directory back as plain records, for exports, proposals and check.

Exports are derived from the VOC dataset plus metadata.jsonl, so they need no model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imaginarynet.classes import ImageClass
from imaginarynet.dataset import Entry, entry_of_row, read_metadata
from imaginarynet.errors import UserError
from imaginarynet.outdir import OutputDir
from imaginarynet.runstate import RunState


@dataclass
class Dataset:
    root: Path
    classes: list[ImageClass]
    items: list[Entry]

    @property
    def images_dir(self) -> Path:
        return OutputDir(self.root).images

    def split(self, name: str) -> list[Entry]:
        path = OutputDir(self.root).imageset(name)
        if not path.exists():
            raise UserError(f"no split {name!r}: {path} does not exist")
        by_id = {it.id: it for it in self.items}
        ids = path.read_text().split()
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise UserError(f"{path} lists ids without metadata: {', '.join(missing[:5])}")
        return [by_id[i] for i in ids]


def read_run(root: Path) -> dict:
    """run.json of an output directory, or a one-line error."""
    run = RunState(OutputDir(root)).read()
    if run is None:
        raise UserError(f"{root} is not an ImaginaryNet output directory (no run.json)")
    return run


def classes_of(root: Path) -> list[ImageClass]:
    return [ImageClass(label, name) for label, name in read_run(root)["options"]["classes"]]


def read_dataset(root: Path) -> Dataset:
    root = Path(root)
    classes = classes_of(root)
    if read_run(root).get("status") != "complete":
        raise UserError(f"{root}: the run is not complete; run the same generate command again first")
    items = [entry_of_row(m, root) for m in read_metadata(OutputDir(root).metadata)]
    return Dataset(root, classes, items)
