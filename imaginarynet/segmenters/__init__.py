"""Segmenters turn box prompts into instance masks: `segment(images, boxes)` returns, per image, per box
prompt (xyxy pixels), {"mask": bool (H, W) array at the image's size, "iou": the model's predicted IoU}.

The SAM family (SAM, SlimSAM, MedSAM, SAM-HQ, SAM 2 / 2.1) runs through transformers in segmenters/sam.py.
This module stays light (no torch, no transformers) so that --segmenter is checked before anything loads;
the box and quality rules applied to the masks are in imaginarynet/masks.py.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Protocol

from imaginarynet.errors import UserError

# transformers' model_type -> the family we run it as. The SAM 2.1 checkpoints on the hub say "sam2_video"
# (one checkpoint for images and video); Sam2Model loads them for images.
MODEL_TYPES = {"sam": "sam", "sam_hq": "sam_hq", "sam2": "sam2", "sam2_video": "sam2"}
# family -> "module:Class"; every class is built as Class(ref, family, device=, dtype=)
SEGMENTERS = {family: "imaginarynet.segmenters.sam:SamSegmenter" for family in ("sam", "sam_hq", "sam2")}


class Segmenter(Protocol):
    def load(self) -> None:
        """Load the model (once per process, only if work remains)."""

    def segment(self, images: list, boxes: list[list[list[float]]]) -> list[list[dict]]:
        """Masks per image, per box, in order."""

    def describe(self) -> dict:
        """What run.json records about the segmenter."""


def segmenter_family(ref) -> str:
    """The family ("sam", "sam_hq" or "sam2") from a local folder's config.json; for a hub id, guessed from
    its name, SAM unless it names SAM 2 or SAM-HQ (SlimSAM and MedSAM are SAM); load() reads the real
    config and corrects the guess, or refuses a model that is not SAM-family."""
    ref = str(ref)
    config = Path(ref).expanduser() / "config.json"
    if config.is_file():
        try:
            model_type = json.loads(config.read_text()).get("model_type", "")
        except ValueError:
            raise UserError(f"--segmenter: {config} is not valid JSON") from None
        if model_type not in MODEL_TYPES:
            raise UserError(f"--segmenter {ref} is not a SAM-family model ImaginaryNet knows (model_type "
                            f"{model_type or 'unknown'!r}; supported: SAM, SlimSAM, MedSAM, SAM-HQ, SAM 2)")
        return MODEL_TYPES[model_type]
    name = ref.lower().rsplit("/", 1)[-1].replace("-", "").replace("_", "")
    if "sam2" in name:
        return "sam2"
    if "samhq" in name:
        return "sam_hq"
    return "sam"


def create_segmenter(ref, device: str | None = None, dtype: str = "auto") -> Segmenter:
    """The segmenter for a model reference (hub id or folder), not loaded yet. device None: cuda when torch
    sees one, else cpu."""
    module, _, attr = SEGMENTERS[segmenter_family(ref)].partition(":")
    return getattr(importlib.import_module(module), attr)(str(ref), segmenter_family(ref), device=device,
                                                          dtype=dtype)
