"""COCO JSON (FORMATS.md, "COCO JSON") for mmdetection, wetectron/PCL: one full-image box per
image-level label (every prompted class of a scene), or one annotation per detector box; or images
only (annotations: []) for SSOD unlabeled sets."""
from __future__ import annotations

from imaginarynet import masks
from imaginarynet.dataset import Entry, image_labels
from imaginarynet.records import label_boxes


def coco_categories(classes) -> list[dict]:
    return [{"id": i, "name": c.label, "supercategory": "object"} for i, c in enumerate(classes, 1)]


def coco_dict(items: list[Entry], classes, images_only: bool = False, polygons: bool = False) -> dict:
    """With masks, each annotation's `segmentation` is the mask as COCO RLE (or, `polygons`, its external
    contours as COCO polygons), `area` the mask's pixel count and `bbox` the mask's box."""
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
