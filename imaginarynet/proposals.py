"""Region proposals for WSOD training (FORMATS.md, "Object proposals").

Selective Search (opencv-contrib) per image in a process pool; each image's
boxes are cached under OUT/.state/proposals/ as soon as they exist, so an
interrupted run resumes where it stopped. Output files list images in split order:
OICR .mat (cell array of [y1 x1 y2 x2], 1-based) or PCL/wetectron .pkl
(indexes, [x1 y1 x2 y2] 0-based boxes, scores).
"""
from __future__ import annotations

import io
import pickle
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from imaginarynet.errors import require
from imaginarynet.fsutil import atomic_write_bytes

MAX_BOXES = 2000  # what OICR/PCL use per image


def selective_search(path: str, mode: str = "fast", max_boxes: int = MAX_BOXES) -> np.ndarray:
    """(N, 4) int32 boxes [x1 y1 x2 y2], 0-based inclusive, in selective search's ranking order."""
    import cv2

    cv2.setNumThreads(1)  # one process per core already
    _seed_c_rand(0)  # opencv ranks regions with C rand(): seeded, the boxes and their order are reproducible
    image = cv2.imread(path)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(image)
    ss.switchToSelectiveSearchFast() if mode == "fast" else ss.switchToSelectiveSearchQuality()
    rects = ss.process()[:max_boxes].astype(np.int32)  # x, y, w, h
    boxes = np.column_stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2] - 1, rects[:, 1] + rects[:, 3] - 1])
    h, w = image.shape[:2]
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w - 1)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h - 1)
    return boxes


def _seed_c_rand(seed: int) -> None:
    import ctypes

    try:
        ctypes.CDLL(None).srand(seed)
    except (OSError, AttributeError, TypeError):  # no C library handle (Windows): order may vary per run
        pass


def _job(args):
    image_path, cache_path, mode = args
    boxes = selective_search(image_path, mode)
    buf = io.BytesIO()
    np.save(buf, boxes)
    atomic_write_bytes(Path(cache_path), buf.getvalue())
    return cache_path


def compute_proposals(items, cache_dir: Path, mode: str, workers: int, quiet: bool = False) -> list[np.ndarray]:
    """Boxes for every item, in order, computing only those not cached yet."""
    require("cv2", "export", "selective search proposals")
    from tqdm import tqdm

    cache_dir.mkdir(parents=True, exist_ok=True)
    todo = [(str(it.path), str(cache_dir / f"{it.id}.npy"), mode) for it in items
            if not (cache_dir / f"{it.id}.npy").exists()]
    if todo:
        bar = tqdm(total=len(items), initial=len(items) - len(todo), unit="img", desc="proposals", disable=quiet)
        if workers > 1:
            with get_context("spawn").Pool(workers) as pool:
                for _ in pool.imap_unordered(_job, todo, chunksize=4):
                    bar.update()
        else:
            for job in todo:
                _job(job)
                bar.update()
        bar.close()
    return [np.load(cache_dir / f"{it.id}.npy") for it in items]


def rank_scores(n: int) -> np.ndarray:
    """Selective search gives a ranking, not scores: map rank to a score in (0, 1]."""
    return (1.0 - np.arange(n, dtype=np.float32) / max(n, 1)).astype(np.float32)


def oicr_mat(items, boxes: list[np.ndarray]) -> bytes:
    from scipy.io import savemat

    cells = np.empty((1, len(items)), dtype=object)
    names = np.empty((1, len(items)), dtype=object)
    for i, (it, b) in enumerate(zip(items, boxes)):
        cells[0, i] = (b[:, [1, 0, 3, 2]] + 1).astype(np.float64)  # y1 x1 y2 x2, 1-based
        names[0, i] = it.id
    buf = io.BytesIO()
    savemat(buf, {"boxes": cells, "images": names})
    return buf.getvalue()


def pcl_pkl(items, boxes: list[np.ndarray]) -> bytes:
    data = {"indexes": [int(it.id) for it in items], "boxes": [b.astype(np.float32) for b in boxes],
            "scores": [rank_scores(len(b)) for b in boxes]}
    return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
