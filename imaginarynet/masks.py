"""Instance masks as plain numpy: the COCO RLE the ledger and metadata.jsonl store, the box and quality rules
the segmenter stage applies, and the polygons the COCO (--polygons) and YOLO-seg writers need.

A mask is a bool array of the image's size (H, W). pycocotools and cv2 are imported inside the functions
that use them, so importing this module costs nothing.
"""
from __future__ import annotations

import math

import numpy as np


def encode(mask: np.ndarray) -> dict:
    """COCO compressed RLE, exactly as pycocotools writes it (column-major), with `counts` as str so that it
    goes into JSON as it is."""
    rle = _cocomask().encode(np.asfortranarray(np.asarray(mask).astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode(rle: dict) -> np.ndarray:
    """The bool (H, W) mask of an RLE (`counts` as str or bytes)."""
    return _cocomask().decode(_as_bytes(rle)).astype(bool)


def area(rle: dict) -> int:
    """The mask's pixel count, without decoding it."""
    return int(_cocomask().area(_as_bytes(rle)))


def _cocomask():
    from imaginarynet.errors import require

    return require("pycocotools.mask", "export", "instance masks")


def _as_bytes(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def bbox(mask: np.ndarray) -> list[int] | None:
    """[min col, min row, max col + 1, max row + 1]: the box in pixel edges, so that a COCO bbox made from it
    encloses every pixel of the segmentation. None for an empty mask."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    y1, y2 = np.flatnonzero(rows)[[0, -1]]
    x1, x2 = np.flatnonzero(cols)[[0, -1]]
    return [int(x1), int(y1), int(x2) + 1, int(y2) + 1]


def clip_to_box(mask: np.ndarray, xyxy) -> np.ndarray:
    """A copy of the mask with the pixels outside the box cleared. The box is rounded outward (a pixel that
    the box touches at all stays), so a mask is never cut inside the detector's box."""
    h, w = mask.shape
    x1, y1, x2, y2 = xyxy
    c1, c2 = max(0, math.floor(x1)), min(w, math.ceil(x2))
    r1, r2 = max(0, math.floor(y1)), min(h, math.ceil(y2))
    out = np.zeros_like(mask, dtype=bool)
    if c2 > c1 and r2 > r1:
        out[r1:r2, c1:c2] = mask[r1:r2, c1:c2]
    return out


def fill(mask: np.ndarray, xyxy) -> float:
    """The mask's pixel count over the (detector) box's area."""
    x1, y1, x2, y2 = xyxy
    return int(np.count_nonzero(mask)) / max((x2 - x1) * (y2 - y1), 1e-9)


def judge(mask: np.ndarray, iou: float, xyxy, min_iou: float, min_fill: float) -> str | None:
    """None if the mask is kept, else the reason metadata.jsonl records. `iou` is the model's predicted IoU as
    it gives it; fill is the mask's pixel count over the detector box's area."""
    if not mask.any():
        return "empty mask"
    if iou < min_iou:
        return f"mask iou {_below(iou, min_iou)} < {min_iou:g}"
    filled = fill(mask, xyxy)
    if filled < min_fill:
        return f"mask fill {_below(filled, min_fill)} < {min_fill:g}"
    return None


def _below(value: float, limit: float) -> str:
    """The value in 2 significant digits, or as many more as it takes not to read as the limit it is under
    (0.6999 is "0.6999 < 0.7", not "0.7 < 0.7")."""
    for digits in range(2, 10):
        text = f"{value:.{digits}g}"
        if float(text) < limit:
            return text
    return repr(value)


def polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons: every external contour of the mask with at least 3 points, each flattened to
    [x1, y1, x2, y2, ...]. Holes are not represented (COCO polygons cannot carry them; the RLE does).

    cv2 gives a contour as the pixel indexes of the boundary pixels; in COCO's coordinates a pixel (c, r)
    is the square [c, c + 1) x [r, r + 1), so 0.5 is added to run the outline through the pixels' centres
    (as detectron2 does). Without it the polygon is shifted up-left by half a pixel, and pycocotools
    rasterises it onto pixels outside the mask."""
    return [(part + 0.5).reshape(-1).tolist() for part in _contours(mask)]


def yolo_segment(mask: np.ndarray) -> np.ndarray:
    """One polygon (N x 2 float pixel coordinates; the caller normalises) for the whole instance: its
    external contours, and an instance in several parts joined into one outline the way ultralytics joins
    segments (merge_multi_segment in ultralytics/data/converter.py). The coordinates are cv2's pixel
    indexes, as ultralytics' own converter writes them from an RLE and as cv2.fillPoly (which ultralytics
    rasterises polygons with) reads them. Empty (0 x 2) for an empty mask."""
    parts = _contours(mask)
    if not parts:
        return np.zeros((0, 2))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(_join(parts))


def _contours(mask: np.ndarray) -> list[np.ndarray]:
    """The external contours with at least 3 points, each (N, 2) float pixel indexes (x, y)."""
    from imaginarynet.errors import require

    cv2 = require("cv2", "export", "mask polygons")
    # CHAIN_APPROX_SIMPLE keeps only the end points of horizontal, vertical and diagonal runs of the boundary:
    # the same outline as CHAIN_APPROX_NONE in a fraction of the points, and what ultralytics' own COCO
    # converter uses when it turns an RLE into polygons.
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(float) for c in contours if len(c) >= 3]


def _join(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Parts chained in order by thin two-way bridges between the closest points of neighbours: the first
    part is walked round from its exit point, each middle part from its entry to its exit, the last part all
    the way round, then the middle parts are finished on the way back (exit round to entry). Every outline
    is closed (its start point repeated) where it is walked round."""
    n = len(parts)
    links = [_closest(parts[i], parts[i + 1]) for i in range(n - 1)]  # (exit of part i, entry of part i+1)
    forward, back = [], []
    for i, part in enumerate(parts):
        entry = links[i - 1][1] if i > 0 else None
        exit_ = links[i][0] if i < n - 1 else None
        if entry is not None and exit_ is not None and entry > exit_:
            # walk a middle part so that its exit comes after its entry
            part, entry, exit_ = part[::-1], len(part) - 1 - entry, len(part) - 1 - exit_
        start = exit_ if entry is None else entry
        ring = np.roll(part, -start, axis=0)
        ring = np.concatenate([ring, ring[:1]])
        if entry is None or exit_ is None:  # the first and the last part
            forward.append(ring)
        else:
            forward.append(ring[: exit_ - entry + 1])
            back.append(ring[exit_ - entry:])
    return forward + back[::-1]


def _closest(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Indexes (into a, into b) of the closest pair of points; the first such pair on ties."""
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(np.argmin(d), d.shape)
    return int(i), int(j)
