"""Copy-paste scenes (`imaginarynet compose`): scene (c, k) as a pure function of (seed, c, k, the instance list,
the background list), and the pixels and labels that follow from it exactly.

Every draw of scene (c, k) is u(what) = (first 8 bytes, little-endian, of
sha256("compose\\0{seed}\\0{label of c}\\0{k}\\0{what}") >> 11) / 2**53, uniform in [0, 1):

    classes      scenes.draw_scene(seed, labels, c, k, MIN, MAX, --cooccurrence): c first, then the extras
    background   B[floor(u("background") * len(B))]: resized (bilinear) to cover W x H (the scale
                 max(W/bw, H/bh), sides rounded), centre-cropped (offsets floor((side - W) / 2)); without --size
                 its own size
    for the j-th class (j = 0, 1, ...) in draw order:
      instance   I_class[floor(u("instance j") * len(I_class))]  (the class's instances in source order)
      scale      s = exp(ln MIN + u("scale j") * (ln MAX - ln MIN))   (--scale MIN-MAX)
      size       the instance box (bw, bh) times s * min(W, H) / max(bw, bh), each side rounded, at least 1
      flip       horizontal if u("flip j") < 0.5
      position   try t = 0..9: x = floor(u("x j t") * (W - w + 1)), y = floor(u("y j t") * (H - h + 1));
                 the first that leaves every instance pasted before with a visible area of at least
                 --min-visible of its own pasted mask area; none: the instance is left out (the primary,
                 pasted first, never is)

Pasting, in draw order (later ones on top): the instance crop (RGB) and its mask (mode "F", 0/1) are resized to
(w, h) with PIL's bilinear filter; alpha = the resized mask, blurred with a Gaussian of --blend-sigma px
(--blend gaussian; zero outside the pasted box) or not (--blend none); pixel = alpha * instance +
(1 - alpha) * background, rounded. Labels: an instance's visible mask = its resized mask > 0.5 (before any
blur) minus the masks pasted after it; its box = the visible mask's box in pixel edges.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

TRIES = 10


def unit(seed: int, label: str, k: int, what: str) -> float:
    digest = hashlib.sha256(f"compose\x00{seed}\x00{label}\x00{k}\x00{what}".encode()).digest()
    return (int.from_bytes(digest[:8], "little") >> 11) / 2 ** 53


@dataclass(frozen=True)
class Instance:
    """A masked object of a source dataset: where it comes from and its mask's box there."""

    source: str  # the source dataset's path as given
    image_id: str
    index: int  # among that image's written objects, in XML order
    label: str
    box: tuple[int, int, int, int]  # the mask's box in the source image (pixel edges)


@dataclass(frozen=True)
class Placement:
    instance: int  # index into the instance list
    label: str
    scale: float
    flip: bool
    box: tuple[int, int, int, int]  # pasted [x, y, w, h]


def cover_crop(size: tuple[int, int], target: tuple[int, int] | None) -> tuple[tuple[int, int], list[int]]:
    """(the size a background is resized to, its crop [x, y, w, h] in that size) for a target (W, H)."""
    if target is None:
        return size, [0, 0, size[0], size[1]]
    (bw, bh), (w, h) = size, target
    scale = max(w / bw, h / bh)
    resized = (max(w, round(bw * scale)), max(h, round(bh * scale)))
    return resized, [(resized[0] - w) // 2, (resized[1] - h) // 2, w, h]


def pasted_size(box, scale: float, width: int, height: int) -> tuple[int, int]:
    bw, bh = box[2] - box[0], box[3] - box[1]
    factor = scale * min(width, height) / max(bw, bh)
    return max(1, min(width, round(bw * factor))), max(1, min(height, round(bh * factor)))


def resized_mask(mask: np.ndarray, flip: bool, size: tuple[int, int]) -> np.ndarray:
    """The instance's mask (cropped to its box) as float 0/1, bilinear-resized to `size` (w, h), flipped."""
    from PIL import Image

    image = Image.fromarray(mask.astype(np.float32), mode="F")
    if flip:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(image.resize(size, Image.BILINEAR), dtype=np.float32)


def plan_scene(seed: int, labels: list[str], classes: list[int], k: int, instances_of: dict[str, list[int]],
               instances: list[Instance], masks_of, width: int, height: int, scale_range: tuple[float, float],
               min_visible: float) -> tuple[list[Placement], list[np.ndarray]]:
    """The placements of scene (classes[0], k) on a width x height image, and each one's alpha (its resized mask,
    float, (h, w)); masks_of(i) is instance i's mask cropped to its box (bool)."""
    primary = labels[classes[0]]
    lo, hi = scale_range
    placed: list[Placement] = []
    alphas: list[np.ndarray] = []
    pasted: list[np.ndarray] = []  # full-image bool masks, in paste order
    for j, ci in enumerate(classes):
        label = labels[ci]
        pool = instances_of[label]
        inst = pool[int(unit(seed, primary, k, f"instance {j}") * len(pool))]
        s = math.exp(math.log(lo) + unit(seed, primary, k, f"scale {j}") * (math.log(hi) - math.log(lo)))
        w, h = pasted_size(instances[inst].box, s, width, height)
        flip = unit(seed, primary, k, f"flip {j}") < 0.5
        alpha = resized_mask(masks_of(inst), flip, (w, h))
        shape = alpha > 0.5
        for t in range(TRIES):
            x = int(unit(seed, primary, k, f"x {j} {t}") * (width - w + 1))
            y = int(unit(seed, primary, k, f"y {j} {t}") * (height - h + 1))
            full = np.zeros((height, width), bool)
            full[y:y + h, x:x + w] = shape
            if all(_visible(pasted[i], pasted[i + 1:] + [full]).sum() >= min_visible * pasted[i].sum()
                   for i in range(len(pasted))):
                placed.append(Placement(inst, label, round(s, 6), flip, (x, y, w, h)))
                alphas.append(alpha)
                pasted.append(full)
                break
    return placed, alphas


def _visible(mask: np.ndarray, later: list[np.ndarray]) -> np.ndarray:
    out = mask.copy()
    for m in later:
        out &= ~m
    return out


def visible_masks(placements: list[Placement], alphas: list[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    """Each placed instance's visible mask: its resized mask > 0.5 minus the masks pasted after it."""
    full = []
    for p, alpha in zip(placements, alphas):
        x, y, w, h = p.box
        m = np.zeros((height, width), bool)
        m[y:y + h, x:x + w] = alpha > 0.5
        full.append(m)
    return [_visible(m, full[i + 1:]) for i, m in enumerate(full)]


def composite(background, placements: list[Placement], alphas: list[np.ndarray], crops_of, sigma: float | None):
    """The scene's pixels (a PIL RGB image): crops_of(i) is instance i's RGB crop (PIL), alphas plan_scene's."""
    from PIL import Image

    canvas = np.asarray(background.convert("RGB"), dtype=np.float64).copy()
    for p, mask in zip(placements, alphas):
        x, y, w, h = p.box
        crop = crops_of(p.instance)
        if p.flip:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        pixels = np.asarray(crop.resize((w, h), Image.BILINEAR), dtype=np.float64)
        alpha = mask.astype(np.float64)
        if sigma:
            from scipy.ndimage import gaussian_filter

            alpha = gaussian_filter(alpha, sigma, mode="constant", cval=0.0)
        alpha = np.clip(alpha, 0.0, 1.0)[..., None]
        region = canvas[y:y + h, x:x + w]
        canvas[y:y + h, x:x + w] = alpha * pixels + (1.0 - alpha) * region
    return Image.fromarray(np.clip(np.round(canvas), 0, 255).astype(np.uint8))
