"""The output directory's layout: every path of OUT. What state those paths are in (the lock, run.json,
--overwrite's set-aside, resume or refuse) is runstate.py's business."""
from __future__ import annotations

import os
from pathlib import Path

# Everything ImaginaryNet writes at the top of OUT; --overwrite removes exactly these.
OWNED = ("VOC2007", "prompts", "metadata.jsonl", "run.json", ".state", "rejected", "report", "exports", "proposals")


class OutputDir:
    """Every path of OUT is spelled here and nowhere else."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.state = self.root / ".state"
        self.voc = self.root / "VOC2007"
        self.images = self.voc / "JPEGImages"
        self.annotations = self.voc / "Annotations"
        self.imagesets = self.voc / "ImageSets" / "Main"
        self.segsets = self.voc / "ImageSets" / "Segmentation"  # with masks
        self.segmentation_objects = self.voc / "SegmentationObject"
        self.segmentation_classes = self.voc / "SegmentationClass"
        self.run_json = self.root / "run.json"
        self.metadata = self.root / "metadata.jsonl"
        self.prompts = self.root / "prompts"
        self.rejected = self.root / "rejected"
        self.report = self.root / "report"
        self.exports = self.root / "exports"
        self.proposals = self.root / "proposals"
        self.ledger = self.state / "ledger.jsonl"
        self.staging = self.state / "images"
        self.shards = self.state / "shards"
        self.tmp = self.state / "tmp"  # temporary names of files bound for VOC2007/
        self.lock_file = self.root / ".imaginarynet.lock"  # not in OWNED: --overwrite keeps it

    # --- the images and annotations of the dataset (ids like "000001")
    def image(self, image_id: str) -> Path:
        return self.images / f"{image_id}.jpg"

    def image_name(self, image_id: str) -> str:
        """An image's path relative to OUT, as metadata.jsonl stores it."""
        return self.image(image_id).relative_to(self.root).as_posix()

    def annotation(self, image_id: str) -> Path:
        return self.annotations / f"{image_id}.xml"

    def segmentation_object(self, image_id: str) -> Path:
        return self.segmentation_objects / f"{image_id}.png"

    def segmentation_class(self, image_id: str) -> Path:
        return self.segmentation_classes / f"{image_id}.png"

    def segset(self, split: str) -> Path:
        return self.segsets / f"{split}.txt"

    def imageset(self, name: str) -> Path:
        return self.imagesets / f"{name}.txt"

    def prompt_list(self, label: str) -> Path:
        return self.prompts / f"{label}.txt"

    # --- staging: attempts, named by (class, k)
    @staticmethod
    def staged_rel(label: str, k: int) -> str:
        """A kept attempt's staged JPEG, relative to .state: the ledger's "file" value (unchanged format)."""
        return f"images/{label}/{k:06d}.jpg"

    def staged(self, rel: str) -> Path:
        return self.state / rel

    def staged_intact(self, rel: str) -> bool:
        """A staged JPEG exists and is whole (starts with SOI, ends with EOI): cheap enough for every
        image on every resume, and it catches the empty or truncated file a power loss leaves."""
        try:
            with open(self.staged(rel), "rb") as f:
                head = f.read(2)
                f.seek(-2, os.SEEK_END)
                return head == b"\xff\xd8" and f.read(2) == b"\xff\xd9"
        except OSError:
            return False

    def embedding(self, label: str, k: int) -> Path:
        """--dedup: the CLIP image embedding of an attempt that passed the other stages."""
        return self.state / "embeddings" / label / f"{k:06d}.npy"

    def rejected_path(self, label: str, k: int) -> Path:
        return self.rejected / label / f"{k:06d}.jpg"

    # --- --shard slices: a ledger and a completion marker each, one finalize lock
    def shard_ledger(self, i: int, n: int) -> Path:
        return self.shards / f"ledger-{i}-of-{n}.jsonl"

    def shard_ledgers(self) -> list[Path]:
        return sorted(self.shards.glob("ledger-*-of-*.jsonl"))

    def shard_marker(self, i: int, n: int) -> Path:
        return self.shards / f"done-{i}-of-{n}"

    @property
    def finalize_lock(self) -> Path:
        return self.shards / "finalize.lock"

    # --- commands that read a finished OUT
    def coco_export(self, split: str, images_only: bool = False) -> Path:
        return self.exports / f"coco_{split}{'_unlabeled' if images_only else ''}.json"

    def detic_export(self) -> Path:
        return self.exports / "detic"

    def yolo_export(self, segments: bool = False) -> Path:
        return self.exports / ("yolo-seg" if segments else "yolo")

    def imagefolder_export(self, split: str) -> Path:
        return self.exports / "imagefolder" / split

    def proposal_cache(self, method: str, mode: str) -> Path:
        return self.state / "proposals" / f"{method}-{mode}"

    def proposal_file(self, method: str, split: str, ext: str) -> Path:
        return self.proposals / f"{method.replace('-', '_')}_{split}.{ext}"
