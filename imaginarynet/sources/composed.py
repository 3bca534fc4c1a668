"""Composed images (`imaginarynet compose SOURCE... --backgrounds DIR`): the masked objects of finished datasets
pasted onto backgrounds, so every box and mask is exact by construction (paste.py says how).

The streams are generate's: one per class, attempt k of class c is scene (c, k) with c as its primary class, the
first q of each class kept (a scene is never rejected, so the attempt cap is the quota). Instances: every
written object with a mask in the SOURCE datasets (made with --segmenter), in source order, then image id, then
XML order. Backgrounds: DIR's images in file-name order, EXIF applied.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imaginarynet.dataset import Entry, select
from imaginarynet.errors import UserError
from imaginarynet.options import StageOptions, option
from imaginarynet.sources.generated import GeneratedSource

BLENDS = ("gaussian", "none")


@dataclass(frozen=True)
class ComposeOptions(StageOptions):
    group = "compose"
    generate = False  # `compose` only
    compose_sources: tuple = option(())  # the SOURCE arguments, as given
    backgrounds: str | None = option(None, "--backgrounds", metavar="DIR",
                                     help="Folder of background images (JPEG, PNG, WebP), used in file-name order.")
    size: str | None = option(None, "--size", metavar="W[xH]", help=(
        "Scene size: each background is resized to cover it and centre-cropped [default: each background's own "
        "size]."))
    scale: str = option("0.15-0.6", "--scale", metavar="MIN-MAX", help=(
        "An instance's longer side over the image's shorter side, log-uniform in this range."))
    blend: str = option("gaussian", "--blend", choices=BLENDS,
                        help="gaussian: soften the pasted alpha with --blend-sigma; none: paste the mask as it is.")
    blend_sigma: float = option(1.0, "--blend-sigma", type=float, help="Gaussian blur of the alpha, in pixels.")
    min_visible: float = option(0.3, "--min-visible", type=float, help=(
        "Each instance keeps at least this fraction of its own pasted mask visible: a later instance that would "
        "hide more moves (up to 10 tries) or is left out."))

    def active(self, cfg) -> bool:
        return bool(self.compose_sources)

    def check(self, cfg) -> dict:
        if not self.compose_sources:
            return {}
        if not self.backgrounds:
            raise UserError("compose needs --backgrounds DIR")
        from imaginarynet.sources.folder import list_images

        list_images(Path(self.backgrounds))  # a missing or empty folder: one line
        parse_size(self.size)
        lo, hi = parse_scale(self.scale)
        if not 0 <= self.min_visible <= 1:
            raise UserError(f"--min-visible must be within [0, 1] (got {self.min_visible})")
        if self.blend_sigma < 0:
            raise UserError(f"--blend-sigma must not be negative (got {self.blend_sigma})")
        instances, _ = load_instances(self.compose_sources)
        have = {inst.label for inst in instances}
        missing = [c.label for c in cfg.classes if c.label not in have]
        if missing:
            raise UserError(f"compose: no instance with a mask of {', '.join(missing)} in the sources (made with "
                            "--segmenter?)")
        return {"compose_sources": tuple(self.compose_sources)}


def parse_size(spec: str | None) -> tuple[int, int] | None:
    if spec is None:
        return None
    w, _, h = str(spec).lower().partition("x")
    try:
        size = (int(w), int(h or w))
    except ValueError:
        raise UserError(f"--size wants W or WxH in pixels, e.g. 512 or 640x480 (got {spec!r})") from None
    if min(size) < 8:
        raise UserError(f"--size {spec}: each side must be at least 8 pixels")
    return size


def parse_scale(spec: str) -> tuple[float, float]:
    lo_text, _, hi_text = str(spec).partition("-")
    try:
        lo, hi = float(lo_text), float(hi_text or lo_text)
    except ValueError:
        raise UserError(f"--scale wants MIN-MAX, e.g. 0.15-0.6 (got {spec!r})") from None
    if not 0 < lo <= hi <= 1:
        raise UserError(f"--scale {spec}: need 0 < MIN <= MAX <= 1 (the instance must fit in the image)")
    return lo, hi


def source_classes(sources, classfile_classes=None) -> list:
    """The run's classes: the sources' (the same in the same order), or the class file's, which must hold them."""
    from imaginarynet.reader import classes_of, read_dataset

    per_source = []
    for src in sources:
        read_dataset(Path(src))  # a finished dataset, or one line saying why not
        per_source.append(classes_of(Path(src)))
    if classfile_classes is not None:
        known = {c.label for c in classfile_classes}
        for src, classes in zip(sources, per_source):
            extra = [c.label for c in classes if c.label not in known]
            if extra:
                raise UserError(f"--classfile lacks {', '.join(extra)} of source {src}")
        return list(classfile_classes)
    first = [c.label for c in per_source[0]]
    for src, classes in zip(sources[1:], per_source[1:]):
        if [c.label for c in classes] != first:
            raise UserError(f"source {src} has other classes than {sources[0]} (or another order): give --classfile")
    return per_source[0]


def load_instances(sources) -> tuple[list, dict]:
    """Every written object with a mask in the sources, in source, image id and XML order; and the image records
    they are in, by (source, image id)."""
    from imaginarynet.paste import Instance
    from imaginarynet.reader import read_dataset

    instances, entries = [], {}
    for src in sources:
        for entry in read_dataset(Path(src)).items:
            entries[(str(src), entry.id)] = entry
            for j, b in enumerate(entry.boxes or ()):
                if "mask" in b:
                    instances.append(Instance(str(src), entry.id, j, b["label"], tuple(b["box"])))
    return instances, entries


class Composer:
    """A worker's view of the instances and backgrounds, with the crops it has read (no model to load)."""

    def __init__(self, opts: ComposeOptions):
        from imaginarynet.sources.folder import list_images

        self.instances, self.rows = load_instances(opts.compose_sources)
        self.instances_of: dict[str, list[int]] = {}
        for i, inst in enumerate(self.instances):
            self.instances_of.setdefault(inst.label, []).append(i)
        self.backgrounds = list_images(Path(opts.backgrounds))
        self.size = parse_size(opts.size)
        self.scale = parse_scale(opts.scale)
        self._masks: dict[int, object] = {}
        self._crops: dict[int, object] = {}

    def load(self) -> None:
        pass

    def describe(self) -> dict:
        return {"composer": "copy-paste", "instances": len(self.instances), "backgrounds": len(self.backgrounds)}

    def mask(self, i: int):
        if i not in self._masks:
            from imaginarynet import masks

            inst = self.instances[i]
            x1, y1, x2, y2 = inst.box
            entry = self.rows[(inst.source, inst.image_id)]
            self._masks[i] = masks.decode(entry.boxes[inst.index]["mask"])[y1:y2, x1:x2]
        return self._masks[i]

    def crop(self, i: int):
        if i not in self._crops:
            from PIL import Image

            inst = self.instances[i]
            with Image.open(self.rows[(inst.source, inst.image_id)].path) as im:
                self._crops[i] = im.convert("RGB").crop(inst.box)
        return self._crops[i]

    def background(self, seed: int, label: str, k: int):
        """(file, the background resized to cover the scene size and cropped, the crop [x, y, w, h])."""
        from PIL import Image

        from imaginarynet.paste import cover_crop, unit
        from imaginarynet.sources.folder import load_image

        path = self.backgrounds[int(unit(seed, label, k, "background") * len(self.backgrounds))]
        image = load_image(path)
        if image is None:
            raise UserError(f"--backgrounds: {path} cannot be read")
        resized, crop = cover_crop(image.size, self.size)
        if resized != image.size:
            image = image.resize(resized, Image.BILINEAR)
        x, y, w, h = crop
        return path.name, image.crop((x, y, x + w, y + h)), crop


def run_batch(cfg, stages, batch: list[tuple[int, int]], timer, out) -> tuple[list[dict], list]:
    """Compose one unit of scenes: ledger records (boxes and masks exact) and the images to stage."""
    from imaginarynet import masks
    from imaginarynet.ledger import new_attempt
    from imaginarynet.paste import composite, plan_scene, visible_masks

    composer = stages.composer
    labels = [c.label for c in cfg.classes]
    records, writes = [], []
    for ci, k in batch:
        label = labels[ci]
        with timer("compose"):
            name, background, crop = composer.background(cfg.seed, label, k)
            width, height = background.size
            classes = stages.scenes.classes_of(ci, k)
            placed, alphas = plan_scene(cfg.seed, labels, classes, k, composer.instances_of, composer.instances,
                                        composer.mask, width, height, composer.scale, cfg.min_visible)
            image = composite(background, placed, alphas, composer.crop,
                              cfg.blend_sigma if cfg.blend == "gaussian" else None)
            visible = visible_masks(placed, alphas, width, height)
        pasted, boxes = [], []
        for z, (p, vis) in enumerate(zip(placed, visible)):
            inst = composer.instances[p.instance]
            vbox = masks.bbox(vis)
            rle = masks.encode(vis)
            pasted.append({"source": inst.source, "image_id": inst.image_id, "index": inst.index, "class": p.label,
                           "scale": p.scale, "flip": p.flip, "box": list(p.box), "z": z, "visible_box": vbox,
                           "visible_mask": rle})
            if vbox is not None:  # an instance whose mask came out empty at its pasted size has no label
                boxes.append({"label": p.label, "box": vbox, "score": 1.0, "mask": rle})
        present = list(dict.fromkeys(b["label"] for b in boxes))
        status = "kept" if label in present else "rejected"  # the primary's mask vanished: refill
        file = out.staged_rel(label, k) if status == "kept" else None
        rec = new_attempt(label, k, None, None, status, None, file, image.size, boxes=boxes,
                          reason=None if file else "empty instance", labels=present if cfg.scenes else None)
        rec["composition"] = {"background": name, "crop": crop, "instances": pasted}
        records.append(rec)
        if file:
            writes.append((out.staged(file), image))
    return records, writes


class ComposedSource(GeneratedSource):
    noun = "composition"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.caps = [2 * q for q in self.quotas]  # a scene is only refilled if its primary instance vanished

    def entries(self, out, by_class: dict[str, list[dict]], skip: set) -> list[Entry]:
        return select(self.cfg.classes, self.cfg.quotas, by_class, label_other=True)
