"""Pascal VOC 2007 layout with image-level labels (FORMATS.md, "Pascal VOC"): written here, and read here
(`read_annotation`) for `check` and `cooccurrence`. With masks (--segmenter) also VOC's segmentation layout:
SegmentationObject/<id>.png (palette PNG, value i = the i-th <object> of the XML, 0 = background),
SegmentationClass/<id>.png (VOC's colormap, value = class index 1..C in class-file order; where masks overlap
the object with the higher detector score owns the pixel), ImageSets/Segmentation/ (Main's splits) and
<segmented>1</segmented>.

Images come from staging (hard-linked when possible); every file is written to a
temporary name under .state/tmp/ and renamed, so a crash never leaves a half-written
file, nor a temporary one, inside VOC2007/.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from imaginarynet.check import read_list
from imaginarynet.dataset import Entry, image_labels, split_ids, voc_box
from imaginarynet.fsutil import atomic_write_bytes, atomic_write_text, place_file
from imaginarynet.outdir import OutputDir
from imaginarynet.records import label_boxes

SPLITS = ("trainval", "train", "val")
_ID = re.compile(r"^\d{6}$")
EXIF_ORIENTATION = 0x0112


def _object(label: str, box: tuple[int, int, int, int]) -> str:
    xmin, ymin, xmax, ymax = box
    return ("  <object>\n"
            f"    <name>{escape(label)}</name><pose>Unspecified</pose>\n"
            "    <truncated>0</truncated><difficult>0</difficult>\n"
            f"    <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>\n"
            "  </object>\n")


def _boxes(e: Entry):
    return label_boxes(image_labels(e), e.boxes, e.width, e.height)


def annotation_xml(e: Entry) -> str:
    """One object per detector box; without a detector one object per image-level label (the prompted
    classes), each the whole image."""
    boxes = _boxes(e)
    objects = "".join(_object(b.label, voc_box(b.xyxy, e.width, e.height)) for b in boxes)
    segmented = int(any(b.mask is not None for b in boxes))
    return (
        "<annotation>\n"
        "  <folder>VOC2007</folder>\n"
        f"  <filename>{e.id}.jpg</filename>\n"
        "  <source><database>ImaginaryNet</database></source>\n"
        f"  <size><width>{e.width}</width><height>{e.height}</height><depth>3</depth></size>\n"
        f"  <segmented>{segmented}</segmented>\n"
        f"{objects}"
        "</annotation>\n"
    )


def write_voc(out: OutputDir, entries: list[Entry], labels: list[str]) -> None:
    for d in (out.images, out.annotations, out.imagesets):
        d.mkdir(parents=True, exist_ok=True)
    for e in entries:
        dst = out.image(e.id)
        src = out.staged(e.staged)
        if not (dst.exists() and os.path.samefile(src, dst)):
            place_file(src, dst, tmp_dir=out.tmp)
        atomic_write_text(out.annotation(e.id), annotation_xml(e), tmp_dir=out.tmp)
    masked = any(b.mask is not None for e in entries for b in _boxes(e))
    if masked:
        for e in entries:
            write_segmentation(out, e, labels)
    labels_of = {e.id: set(image_labels(e)) for e in entries}
    for split, ids in split_ids(list(labels_of)).items():
        atomic_write_text(out.imageset(split), "".join(f"{i}\n" for i in ids), tmp_dir=out.tmp)
        if masked:
            atomic_write_text(out.segset(split), "".join(f"{i}\n" for i in ids), tmp_dir=out.tmp)
        for label in labels:
            lines = "".join(f"{i} {1 if label in labels_of[i] else -1}\n" for i in ids)
            atomic_write_text(out.imageset(f"{label}_{split}"), lines, tmp_dir=out.tmp)


def voc_palette() -> list[int]:
    """VOC's colormap (its devkit's bitget construction): 256 RGB triples, 0 black, 255 the boundary cream."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= (c & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def segmentation_maps(e: Entry, labels: list[str]):
    """(object map, class map) as uint8 (H, W) arrays: object i+1 / its class index where its mask owns the
    pixel. Painted in ascending detector score, so where masks overlap the higher score wins (ties: the
    earlier object)."""
    import numpy as np

    from imaginarynet import masks

    objects = np.zeros((e.height, e.width), np.uint8)
    classes = np.zeros((e.height, e.width), np.uint8)
    boxes = _boxes(e)
    for i in sorted(range(len(boxes)), key=lambda i: (boxes[i].score or 0.0, -i)):
        if boxes[i].mask is None:
            continue
        mask = masks.decode(boxes[i].mask)
        objects[mask] = i + 1
        classes[mask] = labels.index(boxes[i].label) + 1
    return objects, classes


def write_segmentation(out: OutputDir, e: Entry, labels: list[str]) -> None:
    from PIL import Image

    palette = voc_palette()
    for path, values in zip((out.segmentation_object(e.id), out.segmentation_class(e.id)),
                            segmentation_maps(e, labels)):
        image = Image.fromarray(values, mode="P")
        image.putpalette(palette)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue(), tmp_dir=out.tmp)


@dataclass(frozen=True)
class VocObject:
    name: str  # "" when the XML has none
    box: tuple[int, int, int, int] | None  # xmin, ymin, xmax, ymax (1-based, inclusive); None if unreadable
    problem: str | None = None  # why box is None


@dataclass(frozen=True)
class VocAnnotation:
    filename: str | None
    size: tuple[int, int] | None  # (width, height); None if missing or not integers
    objects: list[VocObject]


def read_annotation(path: Path) -> VocAnnotation:
    """One Annotations/*.xml, as any VOC tool writes it; raises ValueError if it is not XML at all."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(str(exc)) from None
    try:
        size = int(root.findtext("size/width")), int(root.findtext("size/height"))
    except (TypeError, ValueError):
        size = None
    objects = []
    for obj in root.findall("object"):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if box is None:
            objects.append(VocObject(name, None, "object without bndbox"))
            continue
        try:
            objects.append(VocObject(name, tuple(int(float(box.findtext(k)))
                                                 for k in ("xmin", "ymin", "xmax", "ymax"))))
        except (TypeError, ValueError):
            objects.append(VocObject(name, None, "bndbox with a missing or non-numeric coordinate"))
    return VocAnnotation(root.findtext("filename"), size, objects)


def check_voc(root: Path, labels: list[str]) -> list[tuple[Path, str]]:
    from PIL import Image

    out = OutputDir(root)
    main, ann_dir, img_dir = out.imagesets, out.annotations, out.images
    problems: list[tuple[Path, str]] = []
    splits: dict[str, list[str]] = {}
    for split in SPLITS:
        path = main / f"{split}.txt"
        lines = read_list(path, problems)
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
            lines = read_list(path, problems)
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
        lines = read_list(out.segset(split), problems)
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
