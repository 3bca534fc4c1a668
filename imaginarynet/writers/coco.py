"""COCO JSON (FORMATS.md, "COCO JSON") for mmdetection, wetectron/PCL: one full-image box per
image-level label (every prompted class of a scene), or one annotation per detector box; or images
only (annotations: []) for SSOD unlabeled sets."""
from __future__ import annotations

import json
from pathlib import Path

from imaginarynet.check import MALFORMED
from imaginarynet.dataset import Entry, image_labels
from imaginarynet.records import label_boxes


def coco_categories(classes) -> list[dict]:
    return [{"id": i, "name": c.label, "supercategory": "object"} for i, c in enumerate(classes, 1)]


def coco_dict(items: list[Entry], classes, images_only: bool = False, polygons: bool = False) -> dict:
    """With masks, each annotation's `segmentation` is the mask as COCO RLE (or, `polygons`, its external
    contours as COCO polygons), `area` the mask's pixel count and `bbox` the mask's box."""
    from imaginarynet import masks  # numpy and pycocotools: only when a dataset is exported

    cat_id = {c.label: i for i, c in enumerate(classes, 1)}
    images = [{"id": int(it.id), "file_name": it.path.name, "width": it.width, "height": it.height}
              for it in items]
    annotations = []
    if not images_only:
        for it in items:
            for b in label_boxes(image_labels(it), it.boxes, it.width, it.height):
                x1, y1, x2, y2 = b.xyxy  # as COCO's [x, y, w, h] in pixels
                w, h = round(x2 - x1, 2), round(y2 - y1, 2)
                ann = {"id": len(annotations) + 1, "image_id": int(it.id), "category_id": cat_id[b.label],
                       "bbox": [x1, y1, w, h], "area": round(w * h, 2), "iscrowd": 0,
                       **({} if b.whole_image else {"score": b.score})}  # a detection keeps the detector's score
                if b.mask is not None:
                    ann["area"] = masks.area(b.mask)
                    ann["segmentation"] = masks.polygons(masks.decode(b.mask)) if polygons else b.mask
                annotations.append(ann)
    return {"info": {"description": "ImaginaryNet synthetic images", "version": "1.0"}, "licenses": [],
            "images": images, "annotations": annotations, "categories": coco_categories(classes)}


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
