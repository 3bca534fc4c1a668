"""CLIP filter (open_clip): keep an image only if CLIP picks its own class, confidently.

Decision rule of the original tool: text prompts "a photo of a {name}" for all
classes, softmax over 100 x cosine similarity; keep iff the image's class is the
top-1 and its probability >= threshold. Text embeddings are computed once per
run; images are scored a batch at a time.

A scene (several prompted classes) is kept iff every prompted class c passes that
rule with the other prompted classes left out of the softmax: softmax over {c} and
the classes not in the prompt, c top-1 with probability >= threshold.
"""
from __future__ import annotations

import numpy as np

from imaginarynet.errors import UserError, require
from imaginarynet.filters import Candidate

LOGIT_SCALE = 100.0
TEXT_TEMPLATE = "a photo of a {name}"


def decide(cosines: np.ndarray, class_index: int, threshold: float, labels: list[str]) -> dict:
    """The keep/reject rule for one image, from its cosine similarity to every class text."""
    logits = LOGIT_SCALE * np.asarray(cosines, dtype=np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top1 = int(np.argmax(probs))
    prob = float(probs[class_index])
    return {"prob": round(prob, 6), "top1": labels[top1], "cos": round(float(cosines[class_index]), 6),
            "accepted": top1 == class_index and prob >= threshold}


def decide_scene(cosines: np.ndarray, prompted: list[int], threshold: float, labels: list[str]) -> dict:
    """The scene rule: `decide` for each prompted class with the other prompted classes masked out (so one
    prompted class is exactly `decide`). Top-level prob/top1/cos are the deciding class's: the first that
    fails, else the least probable; "classes" holds every prompted class's verdict in prompt order."""
    cosines = np.asarray(cosines, dtype=np.float64)
    verdicts = []
    for c in prompted:
        masked = cosines.copy()
        masked[[j for j in prompted if j != c]] = -np.inf
        verdict = decide(masked, c, threshold, labels)
        verdict["cos"] = round(float(cosines[c]), 6)
        verdicts.append(dict(verdict, label=labels[c]))
    failed = [v for v in verdicts if not v["accepted"]]
    deciding = failed[0] if failed else min(verdicts, key=lambda v: v["prob"])
    return {"prob": deciding["prob"], "top1": deciding["top1"], "cos": deciding["cos"], "accepted": not failed,
            "classes": verdicts}


def model_spec(model: str, pretrained: str) -> tuple[str, str | None]:
    """open_clip (model_name, pretrained): a local-dir: folder names the model itself."""
    if pretrained.startswith("local-dir:"):
        return pretrained, None
    if model.startswith(("local-dir:", "hf-hub:")):
        return model, None
    return model, pretrained


class ClipFilter:
    def __init__(self, opts, classes, runtime):
        """opts: FilterOptions (the model and --threshold); classes: the run's ImageClass list."""
        self.opts = opts
        self.labels = [c.label for c in classes]
        self.names = [c.name for c in classes]
        self.device = runtime.device
        self.text_features = None
        self.text_encodes = 0  # how often the class texts were encoded (once per run)
        self.image_encodes = 0  # images through the image tower
        self._scored: tuple = ((), None)  # --dedup: the last scored batch's candidates and unit embeddings

    def load(self) -> None:
        torch = require("torch", "clip", "--clip")
        open_clip = require("open_clip", "clip", "--clip")
        from imaginarynet.runtime import resolve_device

        self._torch = torch
        self.device = resolve_device(self.device)
        self.model, self.preprocess, self.tokenizer = load_open_clip(
            open_clip, self.opts.clip_model, self.opts.clip_pretrained, self.device)
        self.text_features = self.encode_texts([TEXT_TEMPLATE.format(name=n) for n in self.names])

    def encode_texts(self, texts: list[str]):
        torch = self._torch
        with torch.inference_mode():
            feats = self.model.encode_text(self.tokenizer(texts).to(self.device)).float()
        self.text_encodes += 1
        return feats / feats.norm(dim=-1, keepdim=True)

    def _encode_images(self, candidates: list[Candidate]):
        torch = self._torch
        batch = torch.stack([self.preprocess(c.image) for c in candidates]).to(self.device)
        with torch.inference_mode():
            feats = self.model.encode_image(batch).float()
        self.image_encodes += len(candidates)
        return feats / feats.norm(dim=-1, keepdim=True)

    def embed(self, candidates: list[Candidate]) -> np.ndarray:
        """(len(candidates), D) unit-length CLIP image embeddings (for --dedup). Images this filter has just
        scored are not encoded again: the tower's output for the very same image object is reused."""
        scored, feats = self._scored
        row_of = {(c.label, c.k): (c.image, i) for i, c in enumerate(scored)}
        cached = [row_of.get((c.label, c.k)) for c in candidates]
        if all(hit is not None and hit[0] is c.image for hit, c in zip(cached, candidates)):
            return feats[[hit[1] for hit in cached]].cpu().numpy() if candidates else np.zeros((0, 0), np.float32)
        return self._encode_images(candidates).cpu().numpy()

    def cosines(self, candidates: list[Candidate]) -> np.ndarray:
        """(len(candidates), n_classes) cosine similarities of image and class texts."""
        feats = self._encode_images(candidates)
        self._scored = (candidates, feats)  # --dedup's embed() reuses them: no second pass through the tower
        return (feats @ self.text_features.T).cpu().numpy()

    def score(self, candidates: list[Candidate]) -> list[dict]:
        if not candidates:
            return []
        sims = self.cosines(candidates)
        return [decide_scene(row, list(c.classes), self.opts.threshold, self.labels) if len(c.classes) > 1
                else decide(row, c.class_index, self.opts.threshold, self.labels) for row, c in zip(sims, candidates)]

    def classify(self, candidates: list[Candidate]) -> list[dict]:
        """For images of unknown class (`annotate`): the verdict for each image's top-1 class."""
        if not candidates:
            return []
        sims = self.cosines(candidates)
        return [decide(row, int(np.argmax(row)), self.opts.threshold, self.labels) for row in sims]

    def describe(self) -> dict:
        return {"filter": "clip", "model": self.opts.clip_model, "pretrained": self.opts.clip_pretrained,
                "threshold": self.opts.threshold, "device": self.device, "text_template": TEXT_TEMPLATE}


def load_open_clip(open_clip, model: str, pretrained: str, device: str):
    """(model, image preprocess, tokenizer), in eval mode on `device`."""
    from imaginarynet.runtime import quiet_libraries

    quiet_libraries()
    name, weights = model_spec(model, pretrained)
    try:
        clip_model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=weights, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    except (OSError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot load CLIP model {name!r} ({weights}): {str(exc).splitlines()[0]}") from exc
    return clip_model.eval(), preprocess, tokenizer


def class_text_embeddings(texts: list[str], model: str, pretrained: str, device: str = "cpu"):
    """(C, D) float16 CLIP text features, unnormalised, in the given order (Detic's class embeddings)."""
    torch = require("torch", "clip", "Detic embeddings")
    open_clip = require("open_clip", "clip", "Detic embeddings")
    clip_model, _, tokenizer = load_open_clip(open_clip, model, pretrained, device)
    with torch.inference_mode():
        feats = clip_model.encode_text(tokenizer(texts).to(device)).float()
    return feats.cpu().numpy().astype("float16")
