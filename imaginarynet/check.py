"""Validates a dataset against FORMATS.md and names every problem with its file.

Used by `imaginarynet check` and at the end of every generate run.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from imaginarynet.outdir import OutputDir
from imaginarynet.writers.voc import read_annotation

SPLITS = ("trainval", "train", "val")
_ID = re.compile(r"^\d{6}$")
EXIF_ORIENTATION = 0x0112


def _read_list(path: Path, problems: list) -> list[str] | None:
    if not path.exists():
        problems.append((path, "missing"))
        return None
    data = path.read_bytes()
    if b"\r" in data:
        problems.append((path, "has CR line endings (LF only)"))
    if data and not data.endswith(b"\n"):
        problems.append((path, "no final newline"))
    text = data.decode("utf-8", "replace")
    if not text:
        return []
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def check_voc(root: Path, labels: list[str]) -> list[tuple[Path, str]]:
    from PIL import Image

    out = OutputDir(root)
    main, ann_dir, img_dir = out.imagesets, out.annotations, out.images
    problems: list[tuple[Path, str]] = []
    splits: dict[str, list[str]] = {}
    for split in SPLITS:
        path = main / f"{split}.txt"
        lines = _read_list(path, problems)
        if lines is None:
            continue
        ids = [line.strip() for line in lines]
        bad = [i for i in ids if not _ID.match(i)]
        if bad:
            problems.append((path, f"malformed ids (want 6 digits): {', '.join(bad[:3])}"))
        if ids != sorted(ids):
            problems.append((path, "ids are not sorted"))
        if len(set(ids)) != len(ids):
            problems.append((path, "duplicate ids"))
        splits[split] = ids
    trainval = splits.get("trainval", [])
    # Some loaders read these files with numpy.loadtxt, which breaks on a single line.
    if len(trainval) >= 4:
        for split, ids in splits.items():
            if len(ids) < 2:
                problems.append((main / f"{split}.txt", f"holds {len(ids)} id(s); loaders need at least 2"))
    if {"train", "val", "trainval"} <= splits.keys():
        train, val = set(splits["train"]), set(splits["val"])
        if train & val:
            problems.append((main / "train.txt", f"shares ids with val.txt: {sorted(train & val)[:3]}"))
        if train | val != set(trainval):
            problems.append((main / "trainval.txt", "is not the union of train.txt and val.txt"))

    label_of: dict[str, set[str]] = {}  # image-level labels: the names of an image's objects
    objects_of: dict[str, tuple] = {}  # (width, height, object names in XML order)
    for i in trainval:
        xml_path, jpg_path = ann_dir / f"{i}.xml", img_dir / f"{i}.jpg"
        if not jpg_path.exists():
            problems.append((jpg_path, "missing image"))
        if not xml_path.exists():
            problems.append((xml_path, "missing annotation"))
            continue
        try:
            ann = read_annotation(xml_path)
        except (OSError, ValueError) as exc:
            problems.append((xml_path, f"unreadable annotation: {exc}"))
            continue
        if ann.size is None:
            problems.append((xml_path, "unreadable annotation: no integer <size> width and height"))
            continue
        (w, h), names = ann.size, [o.name for o in ann.objects]
        if ann.filename != f"{i}.jpg":
            problems.append((xml_path, f"filename is {ann.filename!r}, want {i}.jpg"))
        if not names:
            problems.append((xml_path, "no object"))
        for name in names:
            if name not in labels:
                problems.append((xml_path, f"unknown label {name!r}"))
        for obj in ann.objects:
            if obj.box is None:
                problems.append((xml_path, obj.problem))
                continue
            x1, y1, x2, y2 = obj.box
            if not (1 <= x1 <= x2 <= w and 1 <= y1 <= y2 <= h):
                problems.append((xml_path, f"box {x1},{y1},{x2},{y2} outside the {w}x{h} image"))
        label_of[i] = set(names)
        objects_of[i] = (w, h, names)
        if jpg_path.exists():
            try:
                with Image.open(jpg_path) as im:
                    if im.format != "JPEG" or im.mode != "RGB":
                        problems.append((jpg_path, f"is {im.format} {im.mode}, want RGB JPEG"))
                    if im.size != (w, h):
                        problems.append((xml_path, f"size {w}x{h} differs from the image's {im.size[0]}x{im.size[1]}"))
                    if EXIF_ORIENTATION in im.getexif():
                        problems.append((jpg_path, "has an EXIF orientation tag"))
            except OSError as exc:
                problems.append((jpg_path, f"unreadable image: {exc}"))
    listed = set(trainval)
    for d, ext in ((img_dir, ".jpg"), (ann_dir, ".xml")):
        for p in sorted(d.glob(f"*{ext}")) if d.exists() else []:
            if p.stem not in listed:
                problems.append((p, "not listed in trainval.txt"))
    for split, ids in splits.items():
        for label in labels:
            path = main / f"{label}_{split}.txt"
            lines = _read_list(path, problems)
            if lines is None:
                continue
            rows = [line.split() for line in lines]
            if [r[0] if r else "" for r in rows] != ids:
                problems.append((path, f"ids differ from {split}.txt"))
                continue
            for r in rows:
                want = "1" if label in label_of.get(r[0], ()) else "-1"
                if len(r) != 2 or r[1] != want:
                    problems.append((path, f"line for {r[0]} should be '{r[0]} {want}'"))
                    break
    if out.segmentation_objects.exists() or out.segsets.exists():
        problems += check_segmentation(out, labels, splits, objects_of)
    return problems


def check_segmentation(out: OutputDir, labels: list[str], splits: dict, objects_of: dict) -> list[tuple[Path, str]]:
    """VOC's segmentation layout (with masks): the split files equal Main's; per image both palette PNGs at
    the image's size, object values within its XML objects, and each pixel's class the class of the object
    that owns it; every mask in metadata.jsonl decodes to its image's size, is not empty and has its box."""
    import numpy as np
    from PIL import Image

    problems = []
    for split, ids in splits.items():
        lines = _read_list(out.segset(split), problems)
        if lines is not None and [line.strip() for line in lines] != ids:
            problems.append((out.segset(split), f"ids differ from ImageSets/Main/{split}.txt"))
    for i, (w, h, names) in objects_of.items():
        maps = []
        for path in (out.segmentation_object(i), out.segmentation_class(i)):
            if not path.exists():
                problems.append((path, "missing"))
                continue
            with Image.open(path) as im:
                if im.mode != "P" or im.size != (w, h):
                    problems.append((path, f"is {im.mode} {im.size[0]}x{im.size[1]}, want a {w}x{h} palette PNG"))
                    continue
                maps.append(np.array(im))
        if len(maps) != 2:
            continue
        objects, classes = maps
        if objects.max() > len(names):
            problems.append((out.segmentation_object(i), f"value {objects.max()} but {len(names)} objects"))
            continue
        want = np.array([0] + [labels.index(n) + 1 if n in labels else 0 for n in names], np.uint8)[objects]
        if not np.array_equal(classes, want):
            problems.append((out.segmentation_class(i), "classes differ from the objects' (SegmentationObject)"))
    problems += _check_masks(out)
    return problems


def _check_masks(out: OutputDir) -> list[tuple[Path, str]]:
    from imaginarynet import masks
    from imaginarynet.dataset import read_metadata

    problems = []
    for row in read_metadata(out.metadata) if out.metadata.exists() else []:
        for j, b in enumerate(row.get("boxes") or []):
            if "mask" not in b:
                continue
            where = f"image {row['id']} box {j}"
            mask = masks.decode(b["mask"])
            if mask.shape != (row["height"], row["width"]):
                problems.append((out.metadata, f"{where}: mask {mask.shape[1]}x{mask.shape[0]} is not the image's"))
            elif masks.bbox(mask) != list(b["box"]):
                problems.append((out.metadata, f"{where}: box {b['box']} is not its mask's {masks.bbox(mask)}"))
    return problems


MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError, OSError)


def check_coco(path: Path, images_dir: Path) -> list[tuple[Path, str]]:
    """Problems of a COCO export; malformed input is a problem line, never an exception."""
    try:
        return _check_coco(path, images_dir)
    except MALFORMED as exc:
        return [(Path(path), f"malformed: {type(exc).__name__}: {exc}")]


def _check_coco(path: Path, images_dir: Path) -> list[tuple[Path, str]]:
    problems = []
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        return [(Path(path), "malformed: not a JSON object")]
    for key in ("images", "annotations", "categories"):
        if key not in data:
            problems.append((path, f"no {key!r}"))
    if problems:
        return problems
    cat_ids = [c["id"] for c in data["categories"]]
    if cat_ids != list(range(1, len(cat_ids) + 1)):
        problems.append((path, "category ids are not 1..C"))
    images = {im["id"]: im for im in data["images"]}
    if len(images) != len(data["images"]):
        problems.append((path, "duplicate image ids"))
    for im in data["images"]:
        if not (Path(images_dir) / im["file_name"]).exists():
            problems.append((path, f"image {im['id']}: file {im['file_name']} missing"))
    for ann in data["annotations"]:
        im = images.get(ann["image_id"])
        if im is None:
            problems.append((path, f"annotation {ann['id']} points to unknown image {ann['image_id']}"))
            continue
        x, y, w, h = ann["bbox"]
        if x < 0 or y < 0 or x + w > im["width"] or y + h > im["height"]:
            problems.append((path, f"annotation {ann['id']}: bbox outside image"))
        if ann["category_id"] not in cat_ids:
            problems.append((path, f"annotation {ann['id']}: unknown category {ann['category_id']}"))
    return problems


def check_detic(folder: Path, images_dir: Path) -> list[tuple[Path, str]]:
    """Problems of a Detic export; malformed input is a problem line naming the file, never an exception."""
    folder = Path(folder)
    problems = []
    info_path, cat_path, emb_path = (folder / n for n in DETIC_FILES)
    for p in (info_path, cat_path, emb_path):
        if not p.exists():
            problems.append((p, "missing"))
    if problems:
        return problems
    current = [info_path]  # the file being read when something malformed turns up
    try:
        return _check_detic(info_path, cat_path, emb_path, images_dir, current)
    except MALFORMED as exc:
        return [(current[0], f"malformed: {type(exc).__name__}: {exc}")]


def _check_detic(info_path, cat_path, emb_path, images_dir, current) -> list[tuple[Path, str]]:
    import numpy as np

    problems = []
    info = json.loads(info_path.read_text())
    cat_ids = sorted(c["id"] for c in info["categories"])
    if info.get("annotations") != []:
        problems.append((info_path, "annotations must be an empty list"))
    counts = {c: 0 for c in cat_ids}
    for im in info["images"]:
        pos = im.get("pos_category_ids")
        if not pos or any(c not in counts for c in pos):
            problems.append((info_path, f"image {im['id']}: bad pos_category_ids {pos}"))
            continue
        for c in pos:
            counts[c] += 1
        if not (Path(images_dir) / im["file_name"]).exists():
            problems.append((info_path, f"image {im['id']}: file {im['file_name']} missing"))
    current[0] = cat_path
    cat_info = json.loads(cat_path.read_text())
    if {c["id"]: c["image_count"] for c in cat_info} != counts:
        problems.append((cat_path, "image_count does not match the images"))
    current[0] = emb_path
    emb = np.load(emb_path)
    # the width is the text tower's (512 for ViT-B/32); rows must match the categories
    if emb.ndim != 2 or emb.shape[0] != len(cat_ids) or emb.dtype != np.float16:
        problems.append((emb_path, f"shape {emb.shape} {emb.dtype}, want ({len(cat_ids)}, D) float16"))
    return problems


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


DETIC_FILES = ("image_info.json", "cat_info.json", "clip_a+cname.npy")


def format_problems(problems, root: Path) -> str:
    def rel(p: Path) -> str:
        try:
            return str(Path(p).relative_to(root))
        except ValueError:
            return str(p)

    return "\n".join(f"{rel(p)}: {msg}" for p, msg in problems)
