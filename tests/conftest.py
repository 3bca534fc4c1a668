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
