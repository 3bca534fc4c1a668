"""The segmenter's options: a SAM-family model masks every box the run writes."""
from __future__ import annotations

from dataclasses import dataclass

from imaginarynet.errors import UserError
from imaginarynet.options import StageOptions, check_model_ref, option


@dataclass(frozen=True)
class SegmenterOptions(StageOptions):
    group = "segmenter"
    segmenter: str | None = option(None, "--segmenter", metavar="ID|DIR", help=(
        "SAM-family model (SAM, SlimSAM, MedSAM, SAM-HQ, SAM 2 / 2.1; transformers) that masks every written "
        "box, e.g. facebook/sam-vit-base or facebook/sam2.1-hiera-tiny; needs --detector. Boxes become their "
        "masks' boxes; masks are written as COCO RLE and VOC segmentation PNGs."))
    mask_iou: float = option(0.7, "--mask-iou", type=float,
                             help="Minimum predicted IoU of a mask (as the model gives it).")
    mask_min_fill: float = option(0.1, "--mask-min-fill", type=float,
                                  help="Minimum mask pixels as a fraction of the detector box's area.")

    def active(self, cfg) -> bool:
        return bool(self.segmenter)

    def check(self, cfg) -> dict:
        if not self.segmenter:
            return {}
        if not cfg.detector:
            raise UserError("--segmenter needs --detector: the detector's boxes are its prompts")
        check_model_ref("--segmenter", self.segmenter)
        for flag, value in (("--mask-iou", self.mask_iou), ("--mask-min-fill", self.mask_min_fill)):
            if not 0.0 <= value <= 1.0:
                raise UserError(f"{flag} must be within [0, 1] (got {value})")
        from imaginarynet.segmenters import segmenter_family  # a config.json read: no model library

        segmenter_family(self.segmenter)  # a local model that is not SAM-family is refused here
        return {}

    def models(self, cfg) -> list[tuple[str, str, str]]:
        return [("segmenter", self.segmenter, "hub")] if self.segmenter else []
