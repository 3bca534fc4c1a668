"""The open-vocabulary detector's options (detectors/)."""
from __future__ import annotations

from dataclasses import dataclass

from imaginarynet.errors import UserError
from imaginarynet.options import StageOptions, check_model_ref, option


@dataclass(frozen=True)
class DetectorOptions(StageOptions):
    group = "detector"
    detector: str | None = option(None, "--detector", metavar="ID|DIR", help=(
        "Open-vocabulary detector for boxes: a transformers zero-shot detector, e.g. "
        "google/owlv2-base-patch16-ensemble. Keeps only images with a box of their own class."))
    box_threshold: float | None = option(None, "--box-threshold", type=float, help=(
        "Minimum detector score of a box [default: the family's, 0.1 for OWLv2/OWL-ViT, 0.35 for Grounding DINO]."))
    nms_iou: float = option(0.5, "--nms-iou", type=float,
                            help="IoU above which class-wise NMS drops the weaker of two boxes.")
    label_other_detections: bool = option(False, "--label-other-detections", is_flag=True, help=(
        "Also write boxes of classes other than the prompted one as labels (always kept in metadata.jsonl)."))

    def active(self, cfg) -> bool:
        return bool(self.detector)

    def check(self, cfg) -> dict:
        if not self.detector:
            return {}
        check_model_ref("--detector", self.detector)
        if self.box_threshold is not None and not 0.0 <= self.box_threshold <= 1.0:
            raise UserError(f"--box-threshold must be within [0, 1] (got {self.box_threshold})")
        if not 0.0 < self.nms_iou <= 1.0:
            raise UserError(f"--nms-iou must be within (0, 1] (got {self.nms_iou})")
        from imaginarynet.detectors.registry import detector_family  # a config.json read: no model library

        detector_family(self.detector)  # a local model that is not a zero-shot detector is refused here
        return {}

    def models(self, cfg) -> list[tuple[str, str, str]]:
        return [("detector", self.detector, "hub")] if self.detector else []
