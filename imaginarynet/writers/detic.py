"""Detic image-labeled data, ImageNet-LVIS style (FORMATS.md, "Detic").

Builds the image-info JSON (images with pos_category_ids, no annotations) and
cat_info (image_count per category, for the federated loss). The third file, the
CLIP text embeddings of the category names (EMBEDDING_PREFIX + name, ViT-B/32 text
tower, rows by ascending id, float16, not normalised: Detic normalises itself), is
model output: exports.py computes it through filters.clip, so this writer stays free
of model code.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from imaginarynet.dataset import Entry, image_labels
from imaginarynet.errors import UserError

EMBEDDING_PREFIX = "a "  # Detic's own class-name prompt for its CLIP text embeddings


def _key(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip().lower())


def own_categories(classes) -> list[dict]:
    """Categories for a standalone dataset: ids 1..C, with the fields the lvis API and Detic read."""
    return [{"id": i, "name": c.label, "synonyms": [c.name], "def": c.name, "synset": c.label,
             "frequency": "f", "image_count": 0, "instance_count": 0} for i, c in enumerate(classes, 1)]


def load_categories(path: Path) -> list[dict]:
    """An LVIS-style categories list: a whole annotation file, {"categories": [...]}, or a list."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"--categories: cannot read {path}: {exc}") from exc
    cats = data.get("categories") if isinstance(data, dict) else data
    if not isinstance(cats, list) or not all(isinstance(c, dict) and "id" in c and "name" in c for c in cats):
        raise UserError(f"--categories: {path} has no list of categories with 'id' and 'name'")
    return sorted(cats, key=lambda c: c["id"])


def map_classes(classes, categories: list[dict]) -> dict[str, int]:
    """label -> category id, matching label or display name against names and synonyms."""
    index: dict[str, int] = {}
    for cat in categories:
        for name in [cat["name"], *cat.get("synonyms", [])]:
            index.setdefault(_key(name), cat["id"])
    mapping, missing = {}, []
    for c in classes:
        cid = index.get(_key(c.label), index.get(_key(c.name)))
        if cid is None:
            missing.append(c.label)
        else:
            mapping[c.label] = cid
    if missing:
        raise UserError(f"--categories: no category matches {', '.join(missing)} (by name or synonym)")
    return mapping


def detic_dicts(items: list[Entry], classes, categories: list[dict], mapping: dict[str, int]):
    """(image info JSON, cat_info list)."""
    counts = {c["id"]: 0 for c in categories}
    images = []
    for it in items:
        pos = list(dict.fromkeys(mapping[label] for label in image_labels(it)))  # every image-level label
        for cid in pos:
            counts[cid] += 1
        images.append({"id": int(it.id), "file_name": it.path.name, "width": it.width, "height": it.height,
                       "pos_category_ids": pos, "neg_category_ids": [], "not_exhaustive_category_ids": []})
    cats = [dict(c, image_count=counts[c["id"]]) for c in categories]
    info = {"info": {"description": "ImaginaryNet image-labeled data"}, "categories": cats, "images": images,
            "annotations": []}
    cat_info = [{"id": c["id"], "image_count": counts[c["id"]]} for c in categories]
    return info, cat_info
