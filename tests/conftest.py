"""Pytest fixtures: tiny random models built once per test session. Plain helpers
(CLI runners, FIXTURES, ...) are in helpers.py: `from helpers import ...`."""
from __future__ import annotations

import os
from pathlib import Path

# An accidental download must fail loudly, never hang or succeed.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    from tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_sd_args(tiny) -> list[str]:
    return ["--sd-model", str(tiny["sd"]), "--steps", "2", "--resolution", "64"]



@pytest.fixture(scope="session")
def pattern(tmp_path_factory):
    """The seed-only backend plugin `pattern_backend:Pattern` (helpers.PATTERN_MODULE), importable in this process."""
    import sys

    from helpers import PATTERN_MODULE

    folder = tmp_path_factory.mktemp("plugin")
    (folder / "pattern_backend.py").write_text(PATTERN_MODULE)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(folder))
        import pattern_backend

        yield pattern_backend
    sys.modules.pop("pattern_backend", None)


@pytest.fixture(scope="session")
def base(tiny_sd_args, tmp_path_factory):
    """Crash and recovery tests: options shared by the cases (3 classes, 30 images, tiny SD, no report), and
    the uninterrupted run they are compared with: (folder, args, its dataset_files). The finished run is in
    folder / "full"; copy it before changing anything."""
    from helpers import dataset_files, run_cli, write_classfile

    d = tmp_path_factory.mktemp("reliability")
    classes = write_classfile(d / "c.txt", ["dog", "cat", "bird"])
    args = ["--num", 30, "--classfile", classes, "--batch-size", 2, "--no-report", *tiny_sd_args]
    full = d / "full"
    res = run_cli(args + ["--outputdir", full])
    assert res.returncode == 0, res.stderr
    return d, args, dataset_files(full)


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs: a real filesystem that runs out of space."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    import subprocess

    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert res.returncode == 0, f"this test needs to mount a tmpfs (root): {res.stderr}"
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


MASK_LABELS = ["dog", "cat"]


@pytest.fixture(scope="session")
def annotated(tiny, tmp_path_factory):
    """`annotate` with --detector and --segmenter as the README types it (the report included), on 8 photos
    of different sizes; the quality thresholds at 0 so every box keeps a mask. (test_masks reads it back, and
    test_compose pastes its objects.)"""
    import numpy as np
    from helpers import read_jsonl, run_cli, write_classfile
    from PIL import Image

    d = tmp_path_factory.mktemp("masks")
    photos = d / "photos"
    photos.mkdir()
    rng = np.random.default_rng(5)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40 + 6 * i, 84 - 5 * i, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    classes = write_classfile(d / "c.txt", MASK_LABELS)
    out = d / "out"
    res = run_cli(["annotate", photos, "--classfile", classes, "--outputdir", out, "--detector", tiny["owlv2"],
                   "--box-threshold", 0.5, "--segmenter", tiny["sam"], "--mask-iou", 0, "--mask-min-fill", 0])
    assert res.returncode == 0, res.stderr
    rows = read_jsonl(out / "metadata.jsonl")
    assert len(rows) >= 3 and sum(len(r["boxes"]) for r in rows) >= 4, "too few boxes for the test to mean much"
    return d, photos, out, rows
