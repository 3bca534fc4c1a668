"""Which detector families ImaginaryNet runs, and the family of a model reference: plain data and a
config.json read, so that options are checked before any model library loads."""
from __future__ import annotations

import json
from pathlib import Path

from imaginarynet.errors import UserError

# family -> "module:Class"; every class is built as Class(DetectorOptions, classes, Runtime, family)
DETECTORS = {
    "owlv2": "imaginarynet.detectors.zero_shot:OwlDetector",
    "owlvit": "imaginarynet.detectors.zero_shot:OwlDetector",
    "grounding-dino": "imaginarynet.detectors.grounding:GroundingDinoDetector",
    "mm-grounding-dino": "imaginarynet.detectors.grounding:GroundingDinoDetector",
}
# what `transformers` calls the families we know but do not run yet
NOT_YET = {"omdet-turbo"}


def detector_family(ref: str) -> str:
    """The model family from a local folder's config.json; for a hub id, guessed from its name."""
    config = Path(ref).expanduser() / "config.json"
    if config.is_file():
        try:
            model_type = json.loads(config.read_text()).get("model_type", "")
        except ValueError:
            raise UserError(f"--detector: {config} is not valid JSON") from None
    else:
        name = ref.lower().rsplit("/", 1)[-1]
        model_type = next((f for f in ("owlv2", "owlvit", "mm-grounding-dino", "grounding-dino", "omdet-turbo")
                           if f.replace("-", "") in name.replace("-", "").replace("_", "")), "")
    model_type = model_type.replace("_", "-")
    if model_type in DETECTORS:
        return model_type
    if model_type in NOT_YET:
        raise UserError(f"--detector {ref}: {model_type} models are not supported yet (use OWLv2 or OWL-ViT)")
    raise UserError(f"--detector {ref} is not a zero-shot object detector ImaginaryNet knows "
                    f"(model_type {model_type or 'unknown'!r}; supported: {', '.join(sorted(DETECTORS))})")
