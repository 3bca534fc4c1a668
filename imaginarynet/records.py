"""One box, as every writer sees it, and the boxes an image is labelled with.

The ledger and metadata.jsonl store boxes as plain dicts ({"label", "box": [x1, y1, x2, y2], "score", "query"});
writers turn them into `Box`es through `label_boxes`, which also holds the one whole-image fallback: an image
without detector boxes is labelled with one whole-image box per image-level label.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    label: str
    xyxy: tuple[float, float, float, float]  # pixels, 0-based, x2 / y2 exclusive
    score: float | None = None  # None: a whole-image label, not a detection
    mask: dict | None = None  # COCO RLE of the object's mask (with a segmenter)

    @property
    def whole_image(self) -> bool:
        return self.score is None

    @classmethod
    def from_record(cls, b: dict) -> Box:
        return cls(b["label"], tuple(b["box"]), b.get("score"), b.get("mask"))


def label_boxes(labels: list[str], boxes: list[dict] | tuple | None, width: int, height: int) -> list[Box]:
    """The boxes an image is labelled with: the detector's boxes written for it or, without a detector, one
    whole-image box per image-level label (`labels`: dataset.label_set's, the primary first)."""
    if boxes is None:
        return [Box(label, (0, 0, width, height)) for label in labels]
    return [Box.from_record(b) for b in boxes]
