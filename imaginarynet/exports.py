"""The commands that read a finished OUT and write derived files: export, check, proposals.

Each takes paths and options and returns what it wrote; the CLI only prints. None of them
imports a model library, except the Detic export's CLIP text embeddings (through the filter).
"""
from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imaginarynet.errors import UserError
from imaginarynet.fsutil import atomic_write_bytes, atomic_write_text
from imaginarynet.outdir import OutputDir
from imaginarynet.reader import classes_of, read_dataset
from imaginarynet.writers.coco import check_coco
from imaginarynet.writers.detic import DETIC_FILES, check_detic
from imaginarynet.writers.voc import check_voc
from imaginarynet.writers.yolo import check_yolo


@dataclass(frozen=True)
class ExportOptions:
    """Every format's export options (a format reads those it has)."""

    split: str = "trainval"
    images_only: bool = False  # coco: no annotations (an SSOD unlabeled set)
    polygons: bool = False  # coco: masks as polygons instead of RLE
    categories: Path | None = None  # detic: LVIS-style categories to map labels onto
    clip_model: str = "ViT-B-32"  # detic: the text embeddings' open_clip model
    clip_pretrained: str = "openai"
    device: str = "cpu"


def _export_coco(root: Path, opts: ExportOptions) -> list[str]:
    from imaginarynet.writers.coco import coco_dict

    ds = read_dataset(root)
    path = OutputDir(root).coco_export(opts.split, opts.images_only)
    atomic_write_text(path, json.dumps(coco_dict(ds.split(opts.split), ds.classes, opts.images_only, opts.polygons)))
    return [f"{path} (images in {ds.images_dir})"]


def _export_imagefolder(root: Path, opts: ExportOptions) -> list[str]:
    from imaginarynet.writers.imagefolder import write_imagefolder

    ds = read_dataset(root)
    folder = write_imagefolder(ds.split(opts.split), OutputDir(root).imagefolder_export(opts.split),
                               [c.label for c in ds.classes])
    return [f"{folder}: datasets.load_dataset('imagefolder', data_dir='{folder}')"]


def _export_yolo(root: Path, opts: ExportOptions, segments: bool = False) -> list[str]:
    from imaginarynet.writers.yolo import SPLITS, write_yolo

    ds = read_dataset(root)
    if segments and not any("mask" in b for it in ds.items for b in it.boxes or ()):
        raise UserError(f"{root} has no masks (run with --segmenter): nothing for --format yolo-seg")
    splits = {split: ds.split(split) for split in SPLITS}
    folder = write_yolo(splits, [c.label for c in ds.classes], OutputDir(root).yolo_export(segments), segments)
    lines = [f"{folder}: {folder / 'data.yaml'} (ultralytics{', task=segment' if segments else ''})"]
    if not any(it.boxes is not None for it in ds.items):
        lines.append("warning: no detector boxes in this dataset (run with --detector): each label is a "
                     "whole-image box")
    return lines


def _export_detic(root: Path, opts: ExportOptions) -> list[str]:
    import numpy as np

    from imaginarynet.filters.clip import class_text_embeddings
    from imaginarynet.options import check_model_ref
    from imaginarynet.writers import detic

    check_model_ref("--clip-pretrained", opts.clip_pretrained)
    ds = read_dataset(root)
    items = ds.split(opts.split)
    if opts.categories:
        cats = detic.load_categories(opts.categories)
        mapping = detic.map_classes(ds.classes, cats)
        texts = [c["name"].replace("_", " ") for c in cats]
    else:
        cats = detic.own_categories(ds.classes)
        mapping = {c.label: i for i, c in enumerate(ds.classes, 1)}
        texts = [c.name for c in ds.classes]
    info, cat_info = detic.detic_dicts(items, ds.classes, cats, mapping)
    emb = class_text_embeddings([detic.EMBEDDING_PREFIX + t for t in texts], opts.clip_model, opts.clip_pretrained,
                                opts.device)
    buf = io.BytesIO()
    np.save(buf, emb)
    folder = OutputDir(root).detic_export()
    info_name, cat_name, emb_name = DETIC_FILES
    atomic_write_text(folder / info_name, json.dumps(info))
    atomic_write_text(folder / cat_name, json.dumps(cat_info))
    atomic_write_bytes(folder / emb_name, buf.getvalue())
    return [f"{folder}: {', '.join(DETIC_FILES)} {emb.shape} (images in {ds.images_dir})"]


def _written(path: Path, fmt: str, root: Path) -> Path:
    if not path.exists():
        raise UserError(f"{path} does not exist; run: imaginarynet export {root} --format {fmt}")
    return path


def _labels(root: Path) -> list[str]:
    return [c.label for c in classes_of(root)]


@dataclass(frozen=True)
class Format:
    """An output format: `export(root, opts)` writes it from a finished dataset and returns the lines to show
    (None: the dataset itself); `check(root, opts)` lists its problems as (file, message)."""

    export: Callable[[Path, ExportOptions], list[str]] | None
    check: Callable[[Path, ExportOptions], list[tuple[Path, str]]]


# The one table of formats: `export --format`, `check --format` and assembly's check read it.
FORMATS = {
    "voc": Format(None, lambda root, o: check_voc(root, _labels(root))),
    "coco": Format(_export_coco, lambda root, o: check_coco(
        _written(OutputDir(root).coco_export(o.split), "coco", root), OutputDir(root).images)),
    "detic": Format(_export_detic, lambda root, o: check_detic(
        _written(OutputDir(root).detic_export(), "detic", root), OutputDir(root).images)),
    "imagefolder": Format(_export_imagefolder, None),
    "yolo": Format(_export_yolo, lambda root, o: check_yolo(
        _written(OutputDir(root).yolo_export(), "yolo", root), _labels(root))),
    "yolo-seg": Format(lambda root, o: _export_yolo(root, o, segments=True), lambda root, o: check_yolo(
        _written(OutputDir(root).yolo_export(segments=True), "yolo-seg", root), _labels(root), segments=True)),
}
EXPORTS = tuple(name for name, f in FORMATS.items() if f.export is not None)
CHECKS = tuple(name for name, f in FORMATS.items() if f.check is not None)


def export(root: Path, fmt: str, opts: ExportOptions) -> list[str]:
    return FORMATS[fmt].export(Path(root), opts)


def check_output(root: Path, fmt: str, split: str) -> list[tuple[Path, str]]:
    """Problems with the dataset (voc) or with the files `export` wrote."""
    return FORMATS[fmt].check(Path(root), ExportOptions(split=split))


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
