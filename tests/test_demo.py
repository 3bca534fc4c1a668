"""The README's first command: `imaginarynet demo` builds its tiny models offline and makes a dataset."""
import os

from helpers import run_cli


def test_demo_from_an_empty_cache(tmp_path):
    env = dict(os.environ, IMAGINARYNET_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "demo"
    res = run_cli(["demo", "--outputdir", out, "--num", 20], env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "images are noise" in res.stderr and "report/index.html" in res.stderr
    assert (tmp_path / "cache" / "tiny-models" / "sd" / "model_index.json").exists()
    assert len(list((out / "VOC2007" / "JPEGImages").glob("*.jpg"))) == 20
    assert (out / "report" / "index.html").exists()
    assert run_cli(["check", out]).returncode == 0
