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
from imaginarynet.filters import Candidate


class Detector(Protocol):
    def load(self) -> None:
        """Load models (once per process, only if work remains)."""

    def detect(self, candidates: list[Candidate]) -> list[list[dict]]:
        """Boxes per candidate, in order."""

    def describe(self) -> dict:
        """What run.json records about the detector."""


def create_detector(cfg) -> Detector | None:
    if not cfg.detector:
        return None
    family = detector_family(cfg.detector)
    module, _, attr = DETECTORS[family].partition(":")
    return getattr(importlib.import_module(module), attr)(cfg, family)


def own_class_hit(boxes: list[dict], label: str) -> bool:
    """The keep rule: at least one box of the image's own class (every box already cleared the threshold)."""
    return any(b["label"] == label for b in boxes)
