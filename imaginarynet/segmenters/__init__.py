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
    family = segmenter_family(ref)
    module, _, attr = SEGMENTERS[family].partition(":")
    return getattr(importlib.import_module(module), attr)(str(ref), family, device=device, dtype=dtype)


def attach_masks(boxes: list[dict], found: list[dict], min_iou: float, min_fill: float) -> list[dict]:
    """The box records of one image with their masks: `found[i]` is the segmenter's {"mask", "iou"} for
    boxes[i]. A mask is clipped to its detector box rounded outward; one that passes --mask-iou and
    --mask-min-fill replaces the box by its own box in pixel edges (the detector's stays as `detector_box`) and
    is stored as COCO RLE; one that fails keeps the detector box and says why (`mask_rejected`: it is not
    written)."""
    from imaginarynet import masks

    out = []
    for b, f in zip(boxes, found):
        mask = masks.clip_to_box(f["mask"], b["box"])
        quality = {"mask_iou": round(float(f["iou"]), 6), "mask_fill": round(masks.fill(mask, b["box"]), 6)}
        reason = masks.judge(mask, f["iou"], b["box"], min_iou, min_fill)
        if reason:
            out.append({**b, **quality, "mask_rejected": reason})
        else:
            out.append({**b, **quality, "box": masks.bbox(mask), "detector_box": b["box"], "mask": masks.encode(mask)})
    return out


def every_class_masked(boxes: list[dict], labels: list[str]) -> bool:
    """The keep rule with a segmenter: every prompted class keeps a box whose mask passed."""
    return all(any(b["label"] == label and "mask" in b for b in boxes) for label in labels)


def mask_boxes(cfg, segmenter, images: list, boxes: list[list[dict]], prompted: list[list[str]]) -> list[list[dict]]:
    """--segmenter: the boxes each image would write (its prompted classes', every class's with
    --label-other-detections) get their masks, in one segmenter call for all the images (attach_masks: the
    quality rules decide which stay); the other boxes stay as they were."""
    picked = [[j for j, b in enumerate(bs) if cfg.label_other_detections or b["label"] in labels]
              for bs, labels in zip(boxes, prompted)]
    found = segmenter.segment(images, [[bs[j]["box"] for j in js] for bs, js in zip(boxes, picked)])
    result = []
    for bs, js, fs in zip(boxes, picked, found):
        masked = dict(zip(js, attach_masks([bs[j] for j in js], fs, cfg.mask_iou, cfg.mask_min_fill)))
        result.append([masked.get(j, b) for j, b in enumerate(bs)])
    return result
