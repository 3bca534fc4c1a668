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
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from imaginarynet.dataset import Entry, image_labels, split_ids, voc_box
from imaginarynet.fsutil import atomic_write_bytes, atomic_write_text, place_file
from imaginarynet.outdir import OutputDir
from imaginarynet.records import label_boxes


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
