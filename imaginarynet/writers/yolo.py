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


def check_yolo(folder: Path, labels: list[str], segments: bool = False) -> list[tuple[Path, str]]:
    """The ultralytics layout: data.yaml names, one label file per image, `class cx cy w h` lines in range
    (with `segments`: `class x1 y1 x2 y2 ...` polygons of 3 or more points, every coordinate in [0, 1])."""
    folder = Path(folder)
    problems: list[tuple[Path, str]] = []
    yaml_path = folder / "data.yaml"
    if not yaml_path.exists():
        return [(yaml_path, "missing")]
    text = yaml_path.read_text()
    for i, label in enumerate(labels):
        if f"  {i}: {json.dumps(label)}\n" not in text:
            problems.append((yaml_path, f"names has no entry {i}: {label}"))
    for key in ("train: images/train", "val: images/val"):
        if key not in text:
            problems.append((yaml_path, f"no '{key}'"))
    for split in ("train", "val"):
        images = {p.stem for p in (folder / "images" / split).glob("*.jpg")}
        label_files = sorted((folder / "labels" / split).glob("*.txt"))
        if images != {p.stem for p in label_files}:
            problems.append((folder / "labels" / split, "label files and images differ"))
        for path in label_files:
            for n, line in enumerate(path.read_text().splitlines(), 1):
                problem = (_segment_line_problem if segments else _yolo_line_problem)(line, len(labels))
                if problem:
                    problems.append((path, f"line {n}: {problem}"))
    return problems


def _segment_line_problem(line: str, n_classes: int) -> str | None:
    parts = line.split()
    if len(parts) < 7 or len(parts) % 2 == 0:
        return f"want 'class x1 y1 x2 y2 x3 y3 ...', got {line[:60]!r}"
    try:
        cls, coords = int(parts[0]), [float(v) for v in parts[1:]]
    except ValueError:
        return f"not numbers: {line[:60]!r}"
    if not 0 <= cls < n_classes:
        return f"class {cls} outside 0..{n_classes - 1}"
    if any(not 0 <= v <= 1 for v in coords):
        return "polygon outside the image"
    return None


def _yolo_line_problem(line: str, n_classes: int) -> str | None:
    parts = line.split()
    if len(parts) != 5:
        return f"want 'class cx cy w h', got {line!r}"
    try:
        cls, cx, cy, w, h = int(parts[0]), *map(float, parts[1:])
    except ValueError:
        return f"not numbers: {line!r}"
    if not 0 <= cls < n_classes:
        return f"class {cls} outside 0..{n_classes - 1}"
    if not (w > 0 and h > 0):
        return "box of zero size"
    if cx - w / 2 < -1e-6 or cy - h / 2 < -1e-6 or cx + w / 2 > 1 + 1e-6 or cy + h / 2 > 1 + 1e-6:
        return "box outside the image"
    return None
