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

from imaginarynet.check import MALFORMED
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


DETIC_FILES = ("image_info.json", "cat_info.json", "clip_a+cname.npy")


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
