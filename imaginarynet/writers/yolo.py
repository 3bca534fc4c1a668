"""The ultralytics YOLO layout: images/{train,val}/, labels/{train,val}/ (one `class cx cy w h` line per
box, normalised to [0, 1], class ids 0..C-1 in class-file order) and data.yaml (path, train, val, names).
Images are hard links (or copies) of VOC2007/JPEGImages. Without detector boxes every image gets its
label (every prompted class of a scene) as a whole-image box."""
from __future__ import annotations

import json
from pathlib import Path

from imaginarynet.dataset import Entry, image_labels
from imaginarynet.fsutil import atomic_write_text, place_file
from imaginarynet.records import label_boxes

SPLITS = ("train", "val")


def yolo_lines(it: Entry, class_index: dict[str, int], segments: bool = False) -> str:
    lines = []
    for b in label_boxes(image_labels(it), it.boxes, it.width, it.height):
        if segments:
            lines.append(segment_line(b, class_index[b.label], it.width, it.height))
            continue
        if b.whole_image:  # exact, not printed through floats
            lines.append(f"{class_index[b.label]} 0.5 0.5 1 1\n")
            continue
        x1, y1, x2, y2 = b.xyxy
        cx, cy = (x1 + x2) / 2 / it.width, (y1 + y2) / 2 / it.height
        w, h = (x2 - x1) / it.width, (y2 - y1) / it.height
        lines.append(f"{class_index[b.label]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def segment_line(b, cls: int, width: int, height: int) -> str:
    """ultralytics' segment label: `class x1 y1 x2 y2 ...`, the instance's polygon normalised to [0, 1] (the
    parts of a mask in several pieces joined as ultralytics joins them); a box without a mask, its corners."""
    import numpy as np

    from imaginarynet import masks

    if b.mask is not None:
        points = masks.yolo_segment(masks.decode(b.mask)) / np.array([width, height], dtype=float)
    else:
        x1, y1, x2, y2 = b.xyxy
        points = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=float) / np.array([width, height])
    return f"{cls} " + " ".join(f"{v:.6f}" for v in np.clip(points, 0, 1).reshape(-1)) + "\n"


def data_yaml(folder: Path, labels: list[str]) -> str:
    # JSON strings are YAML strings: labels need no escaping rules of their own
    names = "".join(f"  {i}: {json.dumps(label)}\n" for i, label in enumerate(labels))
    return (f"path: {json.dumps(str(Path(folder).resolve()))}\n"
            "train: images/train\nval: images/val\n"
            f"names:\n{names}")


def write_yolo(splits: dict[str, list[Entry]], labels: list[str], folder: Path, segments: bool = False) -> Path:
    """The detection layout, or with `segments` ultralytics' segment layout (one polygon line per instance)."""
    class_index = {label: i for i, label in enumerate(labels)}
    for split, items in splits.items():
        for it in items:
            image = folder / "images" / split / it.path.name
            if not image.exists():
                place_file(it.path, image)
            atomic_write_text(folder / "labels" / split / f"{it.path.stem}.txt",
                              yolo_lines(it, class_index, segments))
    atomic_write_text(folder / "data.yaml", data_yaml(folder, labels))
    return folder
