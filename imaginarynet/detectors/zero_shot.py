"""Open-vocabulary detection with transformers' zero-shot detectors (OWLv2, OWL-ViT).

Queries are "a photo of a {display name}" for every class, the family's own post-processing
(`post_process_grounded_object_detection` at --box-threshold) gives boxes in pixels of the image the
processor saw, class-wise NMS (torchvision `batched_nms`, --nms-iou) removes duplicates, and
boxes are clipped to the image. OWLv2 pads every image to a square at the bottom and right
before resizing, so its boxes are scaled by the padded side, max(width, height), on both axes.
"""
from __future__ import annotations

from imaginarynet.detectors import box_record
from imaginarynet.filters import Candidate

QUERY = "a photo of a {name}"
DEFAULT_BOX_THRESHOLD = {"owlv2": 0.1, "owlvit": 0.1}  # the OWL papers' and transformers' demo value


class OwlDetector:
    def __init__(self, opts, classes, runtime, family: str):
        """opts: DetectorOptions; classes: the run's ImageClass list."""
        self.opts, self.family = opts, family
        self.labels = [c.label for c in classes]
        self.queries = [QUERY.format(name=c.name) for c in classes]
        self.threshold = opts.box_threshold if opts.box_threshold is not None else DEFAULT_BOX_THRESHOLD[family]
        self.device = runtime.device

    def load(self) -> None:
        from imaginarynet.detectors import load_zero_shot

        self._torch, self.processor, self.model, self.device = load_zero_shot(self.opts.detector, self.device)
        self.query_embeds = self._encode_queries()

    def _encode_queries(self):
        """The class queries through the text tower once per run (the plain forward re-encodes them for
        every batch); None if this model does not expose the pieces, then the plain forward runs."""
        torch = self._torch
        tower = getattr(self.model, self.family, None)
        if tower is None or not all(hasattr(self.model, f) for f in ("image_embedder", "class_predictor",
                                                                       "box_predictor")):
            return None
        text = self.processor(text=self.queries, return_tensors="pt")
        with torch.inference_mode():
            features = tower.get_text_features(input_ids=text["input_ids"].to(self.device),
                                               attention_mask=text["attention_mask"].to(self.device))
        features = getattr(features, "pooler_output", features)
        return features / torch.linalg.norm(features, dim=-1, keepdim=True)

    def _forward(self, images):
        """logits (B, boxes, queries) and pred_boxes (B, boxes, 4) for a batch of images."""
        from types import SimpleNamespace

        torch = self._torch
        if self.query_embeds is None:
            inputs = self.processor(text=[self.queries] * len(images), images=images, return_tensors="pt")
            with torch.inference_mode():
                return self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        with torch.inference_mode():
            feature_map = self.model.image_embedder(pixel_values=pixels)[0]
            b, h, w, c = feature_map.shape
            image_feats = feature_map.reshape(b, h * w, c)
            queries = self.query_embeds[None].expand(b, -1, -1)
            logits, _ = self.model.class_predictor(image_feats, queries)
            boxes = self.model.box_predictor(image_feats, feature_map)
        return SimpleNamespace(logits=logits, pred_boxes=boxes)

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(height, width) to scale normalised boxes by: OWLv2 saw a square padded at the bottom/right."""
        if self.family == "owlv2":
            side = max(width, height)
            return side, side
        return height, width

    def post_process(self, outputs, target_sizes):
        """The family's own post-processing: the processor's (transformers 5), else its image processor's."""
        post = getattr(self.processor, "post_process_grounded_object_detection", None)
        if post is None:
            post = self.processor.image_processor.post_process_object_detection
        return post(outputs=outputs, threshold=self.threshold, target_sizes=target_sizes)

    def detect(self, candidates: list[Candidate]) -> list[list[dict]]:
        if not candidates:
            return []
        torch = self._torch
        from torchvision.ops import batched_nms

        images = [c.image.convert("RGB") for c in candidates]
        outputs = self._forward(images)
        sizes = torch.tensor([self.target_size(*im.size) for im in images])
        results = self.post_process(outputs, sizes)
        found = []
        for im, res in zip(images, results):
            boxes, scores, labels = (res[k].detach().float().cpu() for k in ("boxes", "scores", "labels"))
            labels = labels.long()
            keep = batched_nms(boxes, scores, labels, self.opts.nms_iou)  # sorted by score, highest first
            records = (box_record(self.labels[q], scores[i], boxes[i].tolist(), *im.size, self.queries[q])
                       for i, q in ((i, int(labels[i])) for i in keep.tolist()))
            found.append([r for r in records if r is not None])
        return found

    def describe(self) -> dict:
        return {"detector": self.family, "model": self.opts.detector, "box_threshold": self.threshold,
                "nms_iou": self.opts.nms_iou, "query_template": QUERY, "device": self.device,
                "queries_encoded_once": self.query_embeds is not None}
