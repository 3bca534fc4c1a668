"""Looking at the data: the HTML report, --dry-run, --log-json, and `download` for offline nodes."""
import json
import re
from html.parser import HTMLParser

import pytest
from helpers import read_jsonl, run_cli, run_main, write_classfile

from imaginarynet.filters.clip import ClipFilter


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.rows, self.titles = [], {}, []
        self._row, self._cells = None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a:
                self.refs.append(a[key])
        if tag == "img" and "title" in a:
            self.titles.append(a["title"])
        if tag == "tr" and "data-class" in a:
            self._row, self._cells = a["data-class"], []

    def handle_data(self, data):
        if self._cells is not None:
            self._cells.append(data)

    def handle_endtag(self, tag):
        if tag == "tr" and self._row:
            self.rows[self._row] = self._cells
            self._row, self._cells = None, None


def alternate(self, candidates):
    """CLIP accepts even attempts and rejects odd ones, so every class has both."""
    import numpy as np

    rows = np.zeros((len(candidates), len(self.labels)))
    for row, c in zip(rows, candidates):
        row[c.class_index if c.k % 2 == 0 else (c.class_index + 1) % len(self.labels)] = 0.3
    return rows


REPORTED_QUOTAS = {"dog": 3, "cat": 2, "bird": 2}  # --num 7 over three classes


@pytest.fixture(scope="module")
def reported(tiny, tiny_sd_args, tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    classes = write_classfile(d / "c.txt", list(REPORTED_QUOTAS))
    out = d / "out"
    log = d / "events.jsonl"
    with pytest.MonkeyPatch.context() as mp:  # undone even when the run raises
        mp.setattr(ClipFilter, "cosines", alternate)
        code = run_main(["--num", 7, "--classfile", classes, "--outputdir", out, "--batch-size", 3, *tiny_sd_args,
                         "--gpt", "--gpt-model", tiny["gpt2"], "--clip", "--clip-pretrained",
                         f"local-dir:{tiny['clip']}", "--keep-rejected", "--log-json", log])
    assert code == 0
    return out, log


@pytest.fixture
def reported_copy(reported, tmp_path):
    """A copy for the tests that write into the folder (the module's dataset stays as generated)."""
    import shutil

    dst = tmp_path / "out"
    shutil.copytree(reported[0], dst)
    return dst


def test_report_lists_every_class_with_counts_and_existing_images(reported):
    out, _ = reported
    page_path = out / "report" / "index.html"
    text = page_path.read_text()
    page = Page()
    page.feed(text)
    meta = read_jsonl(out / "metadata.jsonl")
    for label, quota in REPORTED_QUOTAS.items():
        # the planted pattern accepts even attempts only: q kept after 2q - 1 attempts (one worker runs
        # exactly the attempts a class still needs)
        cells = page.rows[label]
        assert cells[:5] == [label, str(quota), str(quota), str(2 * quota - 1), f"{quota / (2 * quota - 1):.0%}"]
        assert f"hist_{label}.png" in page.refs
    assert len(page.refs) > 10
    for ref in page.refs:
        assert not re.match(r"^(https?:)?//", ref), ref  # self-contained
        assert (page_path.parent / ref).is_file(), ref
    assert "http://" not in text and "https://" not in text
    assert any(m["prompt"] in t for m in meta for t in page.titles)  # prompts on hover
    assert sum("rejected" in r for r in page.refs) >= 3  # rejected samples shown


def test_log_json_has_one_line_per_batch(reported):
    out, log = reported
    events = read_jsonl(log)
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    batches = [e for e in events if e["event"] == "batch"]
    ledger = read_jsonl(out / ".state" / "ledger.jsonl")
    assert sum(b["attempts"] for b in batches) == len(ledger)
    assert sum(b["kept"] for b in batches) == sum(r["status"] == "kept" for r in ledger)
    assert all(b["seconds"] > 0 and b["classes"] for b in batches)
    run = json.loads((out / "run.json").read_text())
    assert {"load", "generate", "filter", "prompts", "finalize"} <= set(run["timings"])


def test_report_and_exports_work_after_state_is_deleted(reported_copy):
    """README: .state/ is safe to delete once the run is complete. The report's counts then come from
    run.json and prompts/: they must still be the planted ones, not zeros."""
    import shutil

    out = reported_copy
    shutil.rmtree(out / ".state")
    assert run_main(["report", out]) == 0
    page = Page()
    page.feed((out / "report" / "index.html").read_text())
    for label, quota in REPORTED_QUOTAS.items():
        assert page.rows[label][:5] == [label, str(quota), str(quota), str(2 * quota - 1),
                                        f"{quota / (2 * quota - 1):.0%}"]
    assert run_main(["export", out, "--format", "coco"]) == 0
    assert run_main(["check", out]) == 0


def test_report_command_rewrites_it(reported_copy):
    out = reported_copy
    (out / "report" / "index.html").unlink()
    assert run_main(["report", out]) == 0
    assert (out / "report" / "index.html").exists()


def test_dry_run_prints_quotas_and_writes_nothing(tiny, tmp_path, capsys):
    classes = write_classfile(tmp_path / "c.txt", ["dog", "diningtable: dining table", "cat"])
    out = tmp_path / "never"
    code = run_main(["--num", 10, "--classfile", classes, "--outputdir", out, "--sd-model", tiny["sd"],
                     "--gpt", "--gpt-model", tiny["gpt2"], "--clip", "--clip-pretrained", f"local-dir:{tiny['clip']}",
                     "--dry-run"])
    text = capsys.readouterr().out
    assert code == 0 and not out.exists()
    rows = [" ".join(line.split()) for line in text.splitlines()]
    assert "dog 'dog' / 4 / 4 or more, at most 16" in rows
    assert "diningtable 'dining table' / 3 / 3 or more, at most 12" in rows
    assert "cat 'cat' / 3 / 3 or more, at most 12" in rows
    assert "images: 10 at 64x64 px, batch size 4, seed 0" in rows
    assert text.count("[local]") == 3


def _kilobytes(text: str) -> float:
    value, unit = re.search(r"estimated disk use: ([\d.]+) (B|kB|MB|GB)", text).groups()
    return float(value) * {"B": 1e-3, "kB": 1, "MB": 1e3, "GB": 1e6}[unit]


def test_dry_run_disk_estimate_is_the_right_order_of_magnitude(reported, tiny, tiny_sd_args, capsys):
    """The estimate for the options of a run that really happened is within 4x of its JPEGs' size."""
    out, _ = reported
    classes = write_classfile(out.parent / "c2.txt", list(REPORTED_QUOTAS))
    assert run_main(["--num", 7, "--classfile", classes, "--outputdir", out.parent / "plan", *tiny_sd_args,
                     "--dry-run"]) == 0
    estimate = _kilobytes(capsys.readouterr().out)
    real = sum(p.stat().st_size for p in (out / "VOC2007" / "JPEGImages").glob("*.jpg")) / 1000
    assert real / 4 <= estimate <= real * 4, (estimate, real)


IMPORT_PROBE = """
import sys
from imaginarynet.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(code or 0, sorted(m for m in {heavy!r} if m in sys.modules))
"""
HEAVY = ("torch", "torchvision", "diffusers", "transformers", "open_clip", "jax", "flax", "cv2", "ray")


@pytest.mark.parametrize("command", ["--help", "dry-run", "dry-run --clip --gpt (hub models)", "check",
                                     "export --format coco", "report"])
def test_commands_that_load_no_model_import_no_model_library(command, reported_copy, tmp_path):
    """A fresh process: what a command imports is what a user waits for (and what may be missing)."""
    import subprocess
    import sys

    out = reported_copy
    args = {
        "--help": ["--help"],
        "dry-run": ["--num", 20, "--classfile", "voc", "--outputdir", tmp_path / "o", "--dry-run"],
        "dry-run --clip --gpt (hub models)": ["--num", 20, "--classfile", "voc", "--outputdir", tmp_path / "o",
                                              "--clip", "--gpt", "--dry-run"],
        "check": ["check", out],
        "export --format coco": ["export", out, "--format", "coco"],
        "report": ["report", out],
    }[command]
    res = subprocess.run([sys.executable, "-c", IMPORT_PROBE.format(heavy=HEAVY), *map(str, args)],
                         capture_output=True, text=True, timeout=120)
    assert res.stdout.strip().splitlines()[-1] == "0 []", (res.stdout, res.stderr)


def test_download_with_local_models_downloads_nothing(tiny, tmp_path):
    res = run_cli(["download", "--sd-model", tiny["sd"], "--gpt", "--gpt-model", tiny["gpt2"], "--clip",
                   "--clip-pretrained", f"local-dir:{tiny['clip']}"], timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("nothing to download") == 3


def test_download_offline_fails_in_one_line(tmp_path):
    res = run_cli(["download", "--sd-model", "someone/some-model"], timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("imaginarynet: error: ")
    assert "someone/some-model" in res.stderr


def test_missing_model_offline_says_which_download_to_run(tmp_path):
    res = run_cli(["--sd-model", "someone/some-model", "--num", 20, "--outputdir", tmp_path / "o"], timeout=120)
    assert res.returncode == 2
    assert "imaginarynet download --sd-model someone/some-model" in res.stderr


def test_report_shows_only_applicable_options_and_prompts_under_images(reported):
    """An SD run's page has no DALL·E settings and no unset option; each image's prompt is printed under it."""
    out, _ = reported
    text = (out / "report" / "index.html").read_text()

    class Options(HTMLParser):
        def __init__(self):
            super().__init__()
            self.inside, self.cells, self.captions, self.in_caption = False, [], [], False

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.inside = dict(attrs).get("id") == "options"
            self.in_caption = tag == "figcaption" or (self.in_caption and tag == "span")
            if tag == "figcaption":
                self.captions.append("")

        def handle_endtag(self, tag):
            if tag == "table":
                self.inside = False
            if tag == "figcaption":
                self.in_caption = False

        def handle_data(self, data):
            if self.inside:
                self.cells.append(data)
            if self.in_caption:
                self.captions[-1] += data

    page = Options()
    page.feed(text)
    keys = set(page.cells[0::2])
    assert {"sd_model", "gpt_model", "clip_model", "threshold", "template", "seed"} <= keys
    assert not keys & {"dalle_model", "vqgan_model", "condition_scale", "scheduler", "detector", "llm"}
    assert "None" not in page.cells[1::2]
    for m in read_jsonl(out / "metadata.jsonl"):
        assert any(c.startswith(m["id"]) and c.endswith(m["prompt"]) for c in page.captions), m["id"]


def test_download_covers_the_detector_and_the_llm(tiny, tmp_path):
    from tiny_models import build_tiny_chat_lm

    chat = build_tiny_chat_lm(tmp_path / "chat")
    res = run_cli(["download", "--sd-model", tiny["sd"], "--llm", chat, "--detector", tiny["owlv2"]], timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert any(line.startswith("detector: ") and "nothing to download" in line for line in lines)
    assert any(line.startswith("prompts: ") and str(chat) in line and "nothing to download" in line for line in lines)
    res = run_cli(["download", "--sd-model", tiny["sd"], "--detector", "someone/owlv2-model"], timeout=120)
    assert res.returncode == 2 and "someone/owlv2-model" in res.stderr
