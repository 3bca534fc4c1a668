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


@pytest.fixture(scope="module")
def reported(tiny, tiny_sd_args, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(ClipFilter, "cosines", alternate)
    d = tmp_path_factory.mktemp("report")
    classes = write_classfile(d / "c.txt", ["dog", "cat", "bird"])
    out = d / "out"
    log = d / "events.jsonl"
    code = run_main(["--num", 7, "--classfile", classes, "--outputdir", out, "--batch-size", 3, *tiny_sd_args,
                     "--gpt", "--gpt-model", tiny["gpt2"], "--clip", "--clip-pretrained", f"local-dir:{tiny['clip']}",
                     "--keep-rejected", "--log-json", log])
    mp.undo()
    assert code == 0
    return out, log


def test_report_lists_every_class_with_counts_and_existing_images(reported):
    out, _ = reported
    page_path = out / "report" / "index.html"
    text = page_path.read_text()
    page = Page()
    page.feed(text)
    meta = read_jsonl(out / "metadata.jsonl")
    ledger = read_jsonl(out / ".state" / "ledger.jsonl")
    for label in ("dog", "cat", "bird"):
        cells = page.rows[label]
        kept = sum(m["class"] == label for m in meta)
        attempts = sum(r["class"] == label for r in ledger)
        assert cells[:4] == [label, str(3 if label == "dog" else 2), str(kept), str(attempts)]
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


def test_report_command_rewrites_it(reported):
    out, _ = reported
    (out / "report" / "index.html").unlink()
    assert run_main(["report", out]) == 0
    assert (out / "report" / "index.html").exists()


def test_dry_run_loads_no_model_and_prints_quotas(tiny, tmp_path, monkeypatch, capsys):
    import imaginarynet.work as work

    monkeypatch.setattr(work, "StageSet", lambda *a, **k: pytest.fail("a model was loaded"))
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
    assert text.count("[local]") == 3 and "estimated disk use: 16.4 kB" in text


def test_dry_run_in_a_fresh_process_imports_no_model_library(tmp_path, tiny):
    code = ("import sys\nfrom imaginarynet.cli import main\n"
            "try:\n    main(['--num', '20', '--outputdir', %r, '--sd-model', %r, '--dry-run'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'jax', 'open_clip') if m in sys.modules))\n"
            % (str(tmp_path / "o"), str(tiny["sd"])))
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"


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
