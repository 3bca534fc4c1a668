"""The commands that read a finished OUT and write derived files: export, check, proposals.

Each takes paths and options and returns what it wrote; the CLI only prints. None of them
imports a model library, except the Detic export's CLIP text embeddings (through the filter).
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

from imaginarynet import check as checks
from imaginarynet.errors import UserError
from imaginarynet.fsutil import atomic_write_bytes, atomic_write_text
from imaginarynet.outdir import OutputDir
from imaginarynet.reader import classes_of, read_dataset


def export_coco(root: Path, split: str, images_only: bool = False) -> Path:
    from imaginarynet.writers.coco import coco_dict

    ds = read_dataset(root)
    path = OutputDir(root).coco_export(split, images_only)
    atomic_write_text(path, json.dumps(coco_dict(ds.split(split), ds.classes, images_only)))
    return path


def export_imagefolder(root: Path, split: str) -> Path:
    from imaginarynet.writers.imagefolder import write_imagefolder

    ds = read_dataset(root)
    return write_imagefolder(ds.split(split), OutputDir(root).imagefolder_export(split))


def export_yolo(root: Path) -> tuple[Path, bool]:
    """(folder, whether the dataset has detector boxes) for the ultralytics layout."""
    from imaginarynet.writers.yolo import SPLITS, write_yolo

    ds = read_dataset(root)
    splits = {split: ds.split(split) for split in SPLITS}
    folder = write_yolo(splits, [c.label for c in ds.classes], OutputDir(root).yolo_export())
    return folder, any("boxes" in it.meta for it in ds.items)


def export_detic(root: Path, split: str, categories: Path | None, clip_model: str, clip_pretrained: str,
                 device: str) -> tuple[Path, tuple[str, ...], tuple[int, ...]]:
    """(folder, file names, embedding shape)."""
    import numpy as np

    from imaginarynet.filters.clip import class_text_embeddings
    from imaginarynet.options import check_model_ref
    from imaginarynet.writers import detic

    check_model_ref("--clip-pretrained", clip_pretrained)
    ds = read_dataset(root)
    items = ds.split(split)
    if categories:
        cats = detic.load_categories(categories)
        mapping = detic.map_classes(ds.classes, cats)
        texts = [c["name"].replace("_", " ") for c in cats]
    else:
        cats = detic.own_categories(ds.classes)
        mapping = {c.label: i for i, c in enumerate(ds.classes, 1)}
        texts = [c.name for c in ds.classes]
    info, cat_info = detic.detic_dicts(items, ds.classes, cats, mapping)
    emb = class_text_embeddings([detic.EMBEDDING_PREFIX + t for t in texts], clip_model, clip_pretrained, device)
    buf = io.BytesIO()
    np.save(buf, emb)
    folder = OutputDir(root).detic_export()
    info_name, cat_name, emb_name = checks.DETIC_FILES
    atomic_write_text(folder / info_name, json.dumps(info))
    atomic_write_text(folder / cat_name, json.dumps(cat_info))
    atomic_write_bytes(folder / emb_name, buf.getvalue())
    return folder, checks.DETIC_FILES, emb.shape


def check_output(root: Path, fmt: str, split: str) -> list[tuple[Path, str]]:
    """Problems with the dataset (voc) or with the files `export` wrote (coco, detic)."""
    out = OutputDir(root)
    if fmt == "voc":
        return checks.check_voc(root, [c.label for c in classes_of(root)])
    if fmt == "coco":
        path = out.coco_export(split)
        if not path.exists():
            raise UserError(f"{path} does not exist; run: imaginarynet export {root} --format coco")
        return checks.check_coco(path, out.images)
    if fmt == "yolo":
        folder = out.yolo_export()
        if not folder.exists():
            raise UserError(f"{folder} does not exist; run: imaginarynet export {root} --format yolo")
        return checks.check_yolo(folder, [c.label for c in classes_of(root)])
    folder = out.detic_export()
    if not folder.exists():
        raise UserError(f"{folder} does not exist; run: imaginarynet export {root} --format detic")
    return checks.check_detic(folder, out.images)


def make_proposals(root: Path, method: str, mode: str, fmt: str, split: str, workers: int | None,
                   quiet: bool = False) -> tuple[Path, int, int]:
    """(file written, images, boxes); per-image results are cached, so an interrupted run resumes."""
    from imaginarynet import proposals as props

    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1 (got {workers})")
    ds = read_dataset(root)
    items = ds.split(split)
    out = OutputDir(root)
    boxes = props.compute_proposals(items, out.proposal_cache(method, mode), mode, workers or os.cpu_count() or 1,
                                    quiet)
    data = props.oicr_mat(items, boxes) if fmt == "oicr" else props.pcl_pkl(items, boxes)
    path = out.proposal_file(method, split, "mat" if fmt == "oicr" else "pkl")
    atomic_write_bytes(path, data)
    return path, len(items), sum(len(b) for b in boxes)
