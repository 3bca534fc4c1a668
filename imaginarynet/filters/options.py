"""The CLIP filter's options (filters/clip.py); --dedup embeds images with the same CLIP model."""
from __future__ import annotations

from dataclasses import dataclass

from imaginarynet.errors import UserError
from imaginarynet.options import StageOptions, check_model_ref, option

DEFAULT_PRETRAINED = "openai"


@dataclass(frozen=True)
class FilterOptions(StageOptions):
    group = "filter"
    clip: bool = option(False, "--clip", is_flag=True, help="Keep only images CLIP assigns to their class.")
    clip_model: str = option("ViT-B-32", "--clip-model", help="open_clip architecture.")
    clip_pretrained: str = option(DEFAULT_PRETRAINED, "--clip-pretrained",
                                  help="open_clip weights: a tag, a local weights file or local-dir:FOLDER.")
    threshold: float = option(0.6, "--threshold", type=float, help="Minimum CLIP probability of the image's own class.")
    cpu: bool = option(False, "--cpu", is_flag=True, data=False,
                       help="Run the CLIP filter, detector and segmenter on the CPU (keeps GPU memory for the "
                       "generator).")

    def data_options(self, cfg) -> dict:
        opts = {"clip": self.clip}
        if self.clip:
            opts.update(clip_model=self.clip_model, clip_pretrained=self.clip_pretrained, threshold=self.threshold)
        return opts

    def check(self, cfg) -> dict:
        if not 0.0 <= self.threshold <= 1.0:
            raise UserError(f"--threshold must be within [0, 1] (got {self.threshold})")
        if self.clip:
            self.check_model()
        return {}

    def check_model(self) -> None:
        """The CLIP model (the filter's, or --dedup's embedder) names weights that exist, given once."""
        check_model_ref("--clip-pretrained", self.clip_pretrained)
        if self.clip_model.startswith(("local-dir:", "hf-hub:")) and self.clip_pretrained != DEFAULT_PRETRAINED:
            raise UserError(f"--clip-pretrained {self.clip_pretrained} would be ignored: --clip-model "
                            f"{self.clip_model} carries its own weights")

    def models(self, cfg) -> list[tuple[str, str, str]]:
        return [("filter", f"{self.clip_model} / {self.clip_pretrained}", "open_clip")] if self.clip else []
