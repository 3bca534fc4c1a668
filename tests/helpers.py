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


def dataset_files(out: Path) -> dict[str, bytes]:
    """Every file of the dataset proper: VOC2007/**, metadata.jsonl, prompts/**."""
    files = {"metadata.jsonl": (out / "metadata.jsonl").read_bytes()}
    for folder in ("VOC2007", "prompts"):
        for p in sorted((out / folder).rglob("*")):
            if p.is_file():
                files[p.relative_to(out).as_posix()] = p.read_bytes()
    return files


def image_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "VOC2007" / "JPEGImages").glob("*.jpg"))}


def ledger_lines(out: Path, ledger: str = "ledger.jsonl") -> int:
    """Attempts recorded so far in OUT/.state/<ledger>."""
    path = out / ".state" / ledger
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def start_cli(args: list, env: dict | None = None, capture: bool = True) -> subprocess.Popen:
    """The CLI in a fresh process, not waited for (stdout/stderr piped as text, or discarded)."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "imaginarynet", *map(str, args)], stdout=out, stderr=out,
                            text=True, env=env)


def wait_for_lines(proc, out: Path, n: int, timeout: float = 120, ledger: str = "ledger.jsonl") -> None:
    """Until OUT's ledger holds n attempts; the run must still be going."""
    deadline = time.time() + timeout
    while ledger_lines(out, ledger) < n:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {n} attempts: {proc.communicate()[1]}")
        assert time.time() < deadline
        time.sleep(0.01)


def kill_midway(args: list, out: Path, min_lines: int, timeout: float = 120, env: dict | None = None,
                ledger: str = "ledger.jsonl") -> None:
    """Start the CLI, SIGKILL it once the ledger has at least `min_lines` attempts."""
    proc = start_cli(args, env=env, capture=False)
    try:
        wait_for_lines(proc, out, min_lines, timeout, ledger)
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

    def __init__(self, options, backend_options, runtime):
        pass

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
task = sys.argv[2]
out = {"names": {int(k): v for k, v in data["names"].items()}}
for split in ("train", "val"):
    ds = YOLODataset(img_path=data[split], data=data, task=task, augment=False, cache=False)
    out[split] = {l["im_file"].rsplit("/", 1)[-1].rsplit(".", 1)[0]:
                  {"cls": l["cls"].ravel().astype(int).tolist(), "xywhn": l["bboxes"].tolist(),
                   "shape": list(l["shape"]), "segments": [s.tolist() for s in l.get("segments") or []]}
                  for l in ds.labels}
print(json.dumps(out))
"""


def ultralytics_labels(data_yaml: Path, tmp: Path, task: str = "detect") -> dict:
    """A YOLO export as ultralytics' own YOLODataset reads it (in a fresh process: ultralytics changes global
    settings on import): {"names", "train"/"val": {image stem: {"cls", "xywhn", "shape" (h, w), "segments"
    (task="segment": one normalised polygon per instance)}}}."""
    env = dict(os.environ, YOLO_CONFIG_DIR=str(tmp), YOLO_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", _ULTRALYTICS_READER, str(data_yaml), task], capture_output=True,
                         text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def report_rows(html_text: str, attribute: str) -> dict[str, list[str]]:
    """The rows of a report table whose <tr> carry `attribute` (e.g. data-boxes): {its value: cell texts}."""
    from html.parser import HTMLParser

    rows: dict[str, list[str]] = {}

    class Rows(HTMLParser):
        key = None

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.key = dict(attrs).get(attribute)
                if self.key:
                    rows[self.key] = []

        def handle_data(self, data):
            if self.key:
                rows[self.key].append(data)

        def handle_endtag(self, tag):
            if tag == "tr":
                self.key = None

    Rows().feed(html_text)
    return rows
