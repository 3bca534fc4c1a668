"""Speed options change speed, not images: each compared with the plain run on the CPU."""
import json

import numpy as np
from helpers import read_jsonl, run_cli, write_classfile
from PIL import Image


def images(out):
    return {m["id"]: np.asarray(Image.open(out / m["file_name"]), float) for m in read_jsonl(out / "metadata.jsonl")}


def test_memory_savers_and_compile_keep_the_images(tiny, tiny_sd_args, tmp_path):
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    base = ["--num", 2, "--classfile", classes, "--batch-size", 2, *tiny_sd_args]
    plain = tmp_path / "plain"
    assert run_cli(base + ["--outputdir", plain]).returncode == 0
    variants = {
        "savers": ["--backend-option", "vae_slicing=true", "--backend-option", "vae_tiling=true",
                   "--backend-option", "attention_slicing=true"],
        "compile": ["--compile", "--tf32", "--cpu-offload"],  # tf32/offload are CUDA-only: no-ops here
    }
    for name, extra in variants.items():
        out = tmp_path / name
        res = run_cli(base + extra + ["--outputdir", out], timeout=900)
        assert res.returncode == 0, res.stderr
        assert [m["seed"] for m in read_jsonl(out / "metadata.jsonl")] == [
            m["seed"] for m in read_jsonl(plain / "metadata.jsonl")]
        for key, img in images(plain).items():
            assert np.abs(images(out)[key] - img).mean() < 1.0, (name, key)
    fast = json.loads((tmp_path / "compile" / "run.json").read_text())["models"]["generator"]["fast_paths"]
    assert fast["compile"] is True and fast["sdpa"] is True and fast["cpu_offload"] is False
    # speed options are not data options: the compiled run resumes into the plain run's folder
    res = run_cli(base + ["--compile", "--outputdir", plain])
    assert res.returncode == 0 and "already complete" in res.stderr
