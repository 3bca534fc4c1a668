"""Grounding DINO (and MM-Grounding-DINO) through transformers: one text of all classes,
"dog . dining table . cat .", and per-token scores for every predicted box.

The family's post-processing returns phrases decoded from the tokens above a text threshold, and
matching a phrase back to a class breaks on multi-word names ("dining table" may come back as
"dining" or "table dining"). So the class of a box is decided on the tokens themselves: each class
owns the span of tokens between two " . " separators, and a box's class is the class whose span
holds the box's highest per-token score among the class tokens. The boxes themselves, their scores
and which boxes clear --box-threshold are the processor's own post-processing
(`post_process_grounded_object_detection`, in pixels of the original image: Grounding DINO does not
pad to a square); then class-wise NMS and clipping, as for every detector.
"""
from __future__ import annotations

from imaginarynet.detectors import box_record
from imaginarynet.errors import UserError
from imaginarynet.filters import Candidate

DEFAULT_BOX_THRESHOLD = 0.35  # the Grounding DINO authors' demo value
SEPARATOR = "."


def query_text(names: list[str]) -> str:
    """Lower-case names separated by ' . ', ending with ' .' (the model's training convention)."""
    return " . ".join(n.lower() for n in names) + " ."


def class_spans(input_ids: list[int], separator_id: int, special_ids: set[int]) -> list[tuple[int, int]]:
    """[start, end) token ranges, one per class in text order: the tokens between separators."""
    spans, start = [], None
    for i, tok in enumerate(input_ids):
        if tok == separator_id:
            if start is not None:
                spans.append((start, i))
            start = None
        elif tok in special_ids:
            continue
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(input_ids)))
    return spans


def class_of_box(token_scores, spans: list[tuple[int, int]]) -> tuple[int, float]:
    """(class index, score): the class whose span holds the box's highest per-token score."""
    best, best_score = 0, float("-inf")
    for c, (a, b) in enumerate(spans):
        score = float(max(token_scores[a:b]))
        if score > best_score:
            best, best_score = c, score
    return best, best_score


class GroundingDinoDetector:
    def __init__(self, opts, classes, runtime, family: str):
        """opts: DetectorOptions; classes: the run's ImageClass list."""
        self.opts, self.family = opts, family
        self.labels = [c.label for c in classes]
        self.names = [c.name.lower() for c in classes]
        self.text = query_text([c.name for c in classes])
        self.threshold = opts.box_threshold if opts.box_threshold is not None else DEFAULT_BOX_THRESHOLD
        self.device = runtime.device

    def load(self) -> None:
        from imaginarynet.detectors import load_zero_shot

        self._torch, self.processor, self.model, self.device = load_zero_shot(self.opts.detector, self.device)
        tokenizer = self.processor.tokenizer
        ids = tokenizer(self.text)["input_ids"]
        separator = tokenizer.convert_tokens_to_ids(SEPARATOR)
        self.spans = class_spans(ids, separator, set(tokenizer.all_special_ids))
        if len(self.spans) != len(self.labels):
            raise UserError(f"--detector {self.opts.detector}: the class names do not tokenize into one span each "
                            f"({len(self.spans)} spans for {len(self.labels)} classes)")

    def detect(self, candidates: list[Candidate]) -> list[list[dict]]:
        if not candidates:
            return []
        torch = self._torch
        from torchvision.ops import batched_nms

        images = [c.image.convert("RGB") for c in candidates]
        inputs = self.processor(images=images, text=[self.text] * len(images), return_tensors="pt")
        with torch.inference_mode():
            outputs = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        # the family's own post-processing picks the boxes (max token score above the threshold, in query
        # order) and scales them to each image; the class comes from the token spans
        results = self.processor.post_process_grounded_object_detection(
            outputs, input_ids=inputs["input_ids"], threshold=self.threshold, text_threshold=self.threshold,
            target_sizes=[(im.height, im.width) for im in images])
        token_scores = outputs.logits.sigmoid().float().cpu()  # (B, queries, text tokens)
        found = []
        for b, (im, res) in enumerate(zip(images, results)):
            picked = (token_scores[b].max(dim=-1).values > self.threshold).nonzero().flatten().tolist()
            boxes, scores = res["boxes"].detach().float().cpu(), res["scores"].detach().float().cpu()
            if len(picked) != len(boxes):  # it keeps query order; a transformers that stops would show here
                raise RuntimeError("Grounding DINO post-processing no longer returns the boxes in query order")
            classes = torch.tensor([class_of_box(token_scores[b, q], self.spans)[0] for q in picked],
                                   dtype=torch.long)
            keep = batched_nms(boxes, scores, classes, self.opts.nms_iou) if len(picked) else []
            records = (box_record(self.labels[c], scores[i], boxes[i].tolist(), *im.size, self.names[c])
                       for i, c in ((i, int(classes[i])) for i in (keep.tolist() if len(picked) else [])))
            found.append([r for r in records if r is not None])
        return found

    def describe(self) -> dict:
        return {"detector": self.family, "model": self.opts.detector, "box_threshold": self.threshold,
                "nms_iou": self.opts.nms_iou, "text": self.text, "device": self.device,
                "class_rule": "highest per-token score's span"}
