"""Box-prompted masks with transformers' SAM family: SamModel + SamProcessor (SAM, SlimSAM, MedSAM),
SamHQModel + SamHQProcessor, Sam2Model + Sam2Processor (SAM 2 / 2.1).

One call: the processor prepares every image that has boxes (and scales the boxes to the model's input),
the image encoder runs once over all of them, then the prompt encoder and mask decoder run once per image
with all of its boxes. Each box gets the multimask output (3 candidates) with the highest predicted IoU,
brought to the original image size and binarised by the processor's own post_process_masks. torch and
transformers are imported in load().
"""
from __future__ import annotations

# family -> (model class, processor class) in transformers. The processor class is named rather than found
# through AutoProcessor: a SAM 2.1 checkpoint is a video checkpoint, and we want the image processor.
CLASSES = {
    "sam": ("SamModel", "SamProcessor"),
    "sam_hq": ("SamHQModel", "SamHQProcessor"),
    "sam2": ("Sam2Model", "Sam2Processor"),
}
DTYPES = ("auto", "float32", "float16", "bfloat16")


class SamSegmenter:
    def __init__(self, ref: str, family: str, device: str | None = None, dtype: str = "auto"):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        self.ref, self.family, self.requested_device, self.dtype = ref, family, device, dtype
        self.device = None
        self.images_encoded = 0  # images through the image encoder: one per image that has boxes
        self.encoder_passes = 0  # calls of the image encoder: one per segment() call

    def load(self) -> None:
        from imaginarynet.errors import UserError, require
        from imaginarynet.runtime import quiet_libraries, resolve_device
        from imaginarynet.segmenters import MODEL_TYPES

        torch = require("torch", "detect", "--segmenter")
        transformers = require("transformers", "detect", "--segmenter")
        quiet_libraries()
        self._torch = torch
        self.device = resolve_device(self.requested_device)
        # "auto" is float32 everywhere: masks are thresholded logits, and half precision moves the boundary
        # pixels; SAM's cost is the image encoder, once per image, so fp32 is affordable. Half precision is
        # there for whoever asks for it.
        self.torch_dtype = getattr(torch, "float32" if self.dtype == "auto" else self.dtype)
        self.dtype = str(self.torch_dtype).removeprefix("torch.")
        try:
            # A hub id's family was only guessed from its name; its config says. (from_pretrained would load a
            # checkpoint of another model type into a SAM with no more than a warning.)
            model_type = transformers.AutoConfig.from_pretrained(self.ref).model_type
            if model_type not in MODEL_TYPES:
                raise UserError(f"--segmenter {self.ref} is not a SAM-family model (model_type {model_type!r})")
            self.family = MODEL_TYPES[model_type]
            model_class, processor_class = (getattr(transformers, name) for name in CLASSES[self.family])
            self.processor = processor_class.from_pretrained(self.ref)
            model = model_class.from_pretrained(self.ref, dtype=self.torch_dtype)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load segmenter {self.ref!r}: {str(exc).splitlines()[0]}; for a machine "
                            f"without internet: imaginarynet download --segmenter {self.ref}") from exc
        self.model = model.to(self.device).eval()

    def segment(self, images: list, boxes: list[list[list[float]]]) -> list[list[dict]]:
        """For each image, for each xyxy box (pixels of that image): {"mask": bool (H, W), "iou": float}."""
        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box lists")
        found: list[list[dict]] = [[] for _ in images]
        todo = [i for i, b in enumerate(boxes) if len(b)]
        if not todo:
            return found
        torch = self._torch
        # One processor call for all images: it resizes them and scales each image's boxes by that image's
        # own size. It wants as many boxes for every image (SAM 2 refuses ragged lists), so shorter lists are
        # padded with their last box; the padding is never decoded.
        most = max(len(boxes[i]) for i in todo)
        padded = [[list(map(float, b)) for b in boxes[i]] + [list(map(float, boxes[i][-1]))] * (most - len(boxes[i]))
                  for i in todo]
        inputs = self.processor(images=[images[i].convert("RGB") for i in todo], input_boxes=padded,
                                return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.torch_dtype)
        with torch.inference_mode():
            embeddings = self.model.get_image_embeddings(pixels)
            self.encoder_passes += 1
            self.images_encoded += len(todo)
            # The processor's boxes keep its dtype (SAM's are float64): the model casts them after scaling, as in
            # a plain call. MPS has no float64.
            prompts = inputs["input_boxes"]
            prompts = prompts.float() if self.device.startswith("mps") else prompts
            for k, i in enumerate(todo):
                n = len(boxes[i])
                out = self.model(**self._embeddings_of(embeddings, k),
                                 input_boxes=prompts[k: k + 1, :n].to(self.device), multimask_output=True)
                iou = out.iou_scores[0].float()  # (n, 3)
                best = iou.argmax(dim=-1)
                rows = torch.arange(n, device=best.device)
                # bilinear resizing works channel by channel, so resizing the chosen logits alone gives the
                # same pixels as resizing all three and choosing after
                chosen = out.pred_masks[0, rows, best][:, None].float()  # (n, 1, h, w)
                masks = self._post_process(chosen, inputs, k).cpu()  # (n, 1, H, W) bool
                found[i] = [{"mask": masks[j, 0].numpy(), "iou": float(iou[j, best[j]])} for j in range(n)]
        return found

    def _embeddings_of(self, embeddings, k: int) -> dict:
        """The model's keyword arguments for image k of a get_image_embeddings batch."""
        if self.family == "sam":
            return {"image_embeddings": embeddings[k: k + 1]}
        if self.family == "sam_hq":  # (last hidden state, the global-attention layers' features)
            last, intermediate = embeddings
            return {"image_embeddings": last[k: k + 1], "intermediate_embeddings": [t[k: k + 1] for t in intermediate]}
        return {"image_embeddings": [level[k: k + 1] for level in embeddings]}  # sam2: one tensor per FPN level

    def _post_process(self, logits, inputs, k: int):
        """The processor's own resizing and binarisation (SAM's also crops its padding away, which needs
        the resized size; SAM 2 resizes to a square without padding)."""
        sizes = inputs["original_sizes"][k: k + 1]
        if self.family == "sam2":
            return self.processor.post_process_masks([logits], sizes)[0]
        return self.processor.post_process_masks([logits], sizes, inputs["reshaped_input_sizes"][k: k + 1])[0]

    def describe(self) -> dict:
        return {"segmenter": self.family, "model": self.ref, "device": self.device, "dtype": self.dtype,
                "mask_choice": "multimask output with the highest predicted IoU",
                "images_encoded": self.images_encoded, "encoder_passes": self.encoder_passes}
