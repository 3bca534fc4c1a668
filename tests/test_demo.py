"""The README's first command: `imaginarynet demo` builds its tiny models offline and makes a dataset."""
import os

from helpers import report_rows, run_cli


def test_demo_from_an_empty_cache(tmp_path):
    """`imaginarynet demo` exactly as the README's first line runs it (defaults: 40 images in ./imaginarynet-demo),
    and what the user then opens: the dataset and its report."""
    env = dict(os.environ, IMAGINARYNET_CACHE=str(tmp_path / "cache"))
    res = run_cli(["demo"], env=env, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "imaginarynet-demo"
    assert "images are noise" in res.stderr and f"report: {out.relative_to(tmp_path)}/report/index.html" in res.stderr
    assert (tmp_path / "cache" / "tiny-models" / "sd" / "model_index.json").exists()
    assert len(list((out / "VOC2007" / "JPEGImages").glob("*.jpg"))) == 40
    rows = report_rows((out / "report" / "index.html").read_text(), "data-class")
    assert sum(int(cells[2]) for cells in rows.values()) == 40 and len(rows) == 20  # kept per VOC class
    assert run_cli(["check", out]).returncode == 0
