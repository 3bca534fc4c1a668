"""Detectors find boxes: `detect(candidates)` returns, per candidate, a list of box dicts

    {"label": class label, "score": float, "box": [x1, y1, x2, y2] (pixels, 0-based, x2/y2 exclusive),
     "query": the text query that matched}

after the family's own post-processing at --box-threshold, class-wise NMS and clipping to the image.
A new detector family is one module with a class that satisfies Detector plus one line in
registry.DETECTORS.
"""
from __future__ import annotations

import importlib
from typing import Protocol

from imaginarynet.detectors.registry import DETECTORS, detector_family
from imaginarynet.errors import UserError, require
from imaginarynet.filters import Candidate


class Detector(Protocol):
    def load(self) -> None:
        """Load models (once per process, only if work remains)."""

    def detect(self, candidates: list[Candidate]) -> list[list[dict]]:
        """Boxes per candidate, in order."""

    def describe(self) -> dict:
        """What run.json records about the detector."""


def create_detector(cfg) -> Detector | None:
    """The --detector model's family class, built from its own options, on the verifiers' device."""
    from imaginarynet.detectors.options import DetectorOptions
    from imaginarynet.runtime import Runtime

    if not cfg.detector:
        return None
    family = detector_family(cfg.detector)
    module, _, attr = DETECTORS[family].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls(DetectorOptions.of(cfg), cfg.classes, Runtime.verifier(cfg), family)


def own_class_hit(boxes: list[dict], label: str) -> bool:
    """The keep rule: at least one box of the image's own class (every box already cleared the threshold)."""
    return any(b["label"] == label for b in boxes)


def every_class_hit(boxes: list[dict], labels: list[str]) -> bool:
    """The keep rule of a scene: a box of every prompted class."""
    return all(own_class_hit(boxes, label) for label in labels)


def load_zero_shot(ref: str, device: str | None):
    """(torch, processor, model on its device, device) for --detector, through transformers' Auto classes."""
    torch = require("torch", "detect", "--detector")
    transformers = require("transformers", "detect", "--detector")
    require("torchvision", "detect", "--detector")
    from imaginarynet.runtime import quiet_libraries, resolve_device

    quiet_libraries()
    device = resolve_device(device)
    try:
        processor = transformers.AutoProcessor.from_pretrained(ref)
        model = transformers.AutoModelForZeroShotObjectDetection.from_pretrained(ref)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load detector {ref!r}: {str(exc).splitlines()[0]}; for a machine "
                        f"without internet: imaginarynet download --detector {ref}") from exc
    return torch, processor, model.to(device).eval(), device


def box_record(label: str, score: float, box, width: int, height: int, query: str) -> dict | None:
    """A box clipped to the image, as the ledger stores it; None if nothing of it is inside."""
    x1, y1, x2, y2 = box
    x1, x2 = (min(max(v, 0.0), width) for v in (x1, x2))
    y1, y2 = (min(max(v, 0.0), height) for v in (y1, y2))
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        return None
    return {"label": label, "score": round(float(score), 6),
            "box": [round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)], "query": query}
