"""Plain helpers for the tests: CLI runners, file readers/writers and the fixture path.

Import them with `from helpers import ...` (the tests folder is on sys.path through
`pythonpath = ["tests"]` in pyproject.toml). Pytest fixtures live in conftest.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# Reference data kept in the repository (tests/fixtures/), so that a fresh clone passes its tests.
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def run_cli(args: list[str], timeout: float = 300, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh process."""
    env = dict(env or os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "imaginarynet", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def write_classfile(path: Path, labels: list[str]) -> Path:
    path.write_text("".join(f"{label}\n" for label in labels))
    return path


def run_main(args: list) -> int:
    """The CLI in this process (so tests can monkeypatch); returns the exit status."""
    from imaginarynet.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code or 0
    return 0


def load_voc(out: Path, split="trainval"):
    """torchvision's VOCDetection expects ROOT/VOCdevkit/VOC2007: OUT is the VOCdevkit."""
    from torchvision.datasets import VOCDetection

    root = out.parent / f"{out.name}-tv"
    root.mkdir(exist_ok=True)
    link = root / "VOCdevkit"
    if not link.exists():
        link.symlink_to(out.resolve())
    return VOCDetection(str(root), year="2007", image_set=split, download=False)


def image_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "VOC2007" / "JPEGImages").glob("*.jpg"))}


def _ledger_lines(out: Path) -> int:
    ledger = out / ".state" / "ledger.jsonl"
    return len(ledger.read_bytes().splitlines()) if ledger.exists() else 0


def kill_midway(args: list, out: Path, min_lines: int, timeout: float = 120, env: dict | None = None) -> None:
    """Start the CLI, SIGKILL it once the ledger has at least `min_lines` attempts."""
    proc = subprocess.Popen([sys.executable, "-m", "imaginarynet", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + timeout
    try:
        while _ledger_lines(out) < min_lines:
            assert proc.poll() is None, "the run finished before it could be killed"
            assert time.time() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


# A backend plugin that makes each image from its seed alone (the `pattern` fixture puts it on sys.path), so
# a test can rebuild the exact pre-JPEG pixels a stage saw.
PATTERN_MODULE = '''
import numpy as np
from PIL import Image
from imaginarynet.backends.base import Generated


def pattern_image(seed, size=64):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


class Pattern:
    name = "pattern"
    requires = ("numpy",)

    def __init__(self, cfg):
        self.cfg = cfg

    def load(self):
        pass

    def generate(self, requests):
        return [Generated(pattern_image(r.seed)) for r in requests]

    def describe(self):
        return {"backend": "pattern"}
'''


_ULTRALYTICS_READER = """
import json, sys
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset

data = check_det_dataset(sys.argv[1])
out = {"names": {int(k): v for k, v in data["names"].items()}}
for split in ("train", "val"):
    ds = YOLODataset(img_path=data[split], data=data, task="detect", augment=False, cache=False)
    out[split] = {l["im_file"].rsplit("/", 1)[-1].rsplit(".", 1)[0]:
                  {"cls": l["cls"].ravel().astype(int).tolist(), "xywhn": l["bboxes"].tolist(),
                   "shape": list(l["shape"])} for l in ds.labels}
print(json.dumps(out))
"""


def ultralytics_labels(data_yaml: Path, tmp: Path) -> dict:
    """A YOLO export as ultralytics' own YOLODataset reads it (in a fresh process: ultralytics changes global
    settings on import): {"names", "train"/"val": {image stem: {"cls", "xywhn", "shape" (h, w)}}}."""
    env = dict(os.environ, YOLO_CONFIG_DIR=str(tmp), YOLO_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", _ULTRALYTICS_READER, str(data_yaml)], capture_output=True,
                         text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])
