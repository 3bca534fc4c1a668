"""Speed options change speed, not images; run.json reports what really ran (read off the loaded
pipeline, not echoed from the options). Each compared with the plain run on the CPU."""
import json

import numpy as np
from helpers import read_jsonl, run_cli, run_main, write_classfile
from PIL import Image


def images(out):
    return {m["id"]: np.asarray(Image.open(out / m["file_name"]), float) for m in read_jsonl(out / "metadata.jsonl")}


def fast_paths(out) -> dict:
    return json.loads((out / "run.json").read_text())["models"]["generator"]["fast_paths"]


def test_compile_keeps_the_images_and_is_really_compiled(tiny, tiny_sd_args, tmp_path):
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    base = ["--num", 2, "--classfile", classes, "--batch-size", 2, *tiny_sd_args]
    plain, fast = tmp_path / "plain", tmp_path / "compile"
    assert run_cli(base + ["--outputdir", plain]).returncode == 0
    res = run_cli(base + ["--compile", "--tf32", "--cpu-offload", "--outputdir", fast], timeout=900)
    assert res.returncode == 0, res.stderr
    assert [m["seed"] for m in read_jsonl(fast / "metadata.jsonl")] == [
        m["seed"] for m in read_jsonl(plain / "metadata.jsonl")]
    for key, img in images(plain).items():
        assert np.abs(images(fast)[key] - img).mean() < 1.0, key
    seen, unseen = fast_paths(fast), fast_paths(plain)
    # the denoiser really is torch.compile's OptimizedModule, attention really goes through torch's SDPA
    assert seen["compile"] is True and unseen["compile"] is False
    assert seen["attention"] == ["AttnProcessor2_0"] and seen["sdpa"] is True
    # TF32 and offload are CUDA features: on the CPU the product must not claim them
    assert seen["cpu_offload"] is False and seen["tf32"] is False
    # speed options are not data options: the compiled run resumes into the plain run's folder
    res = run_cli(base + ["--compile", "--outputdir", plain])
    assert res.returncode == 0 and "already complete" in res.stderr


def test_memory_savers_really_run_and_slicing_keeps_the_images(tiny, tmp_path, monkeypatch):
    """At 128 px the tiny VAE's latents (16) exceed its tile (8), so tiling really tiles: the test counts
    the calls of diffusers' tiled decoder. Tiled decoding blends overlapping tiles, so it changes pixels
    (README); slicing must not."""
    from diffusers import AutoencoderKL

    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    base = ["--num", 3, "--classfile", classes, "--batch-size", 2, "--sd-model", tiny["sd"], "--steps", 2,
            "--resolution", 128, "--no-report", "--quiet"]
    plain, sliced, tiled = tmp_path / "plain", tmp_path / "sliced", tmp_path / "tiled"
    assert run_main(base + ["--outputdir", plain]) == 0
    assert run_main(base + ["--outputdir", sliced, "--backend-option", "vae_slicing=true",
                            "--backend-option", "attention_slicing=true"]) == 0
    for key, img in images(plain).items():
        assert np.abs(images(sliced)[key] - img).mean() < 1.0, key
    assert fast_paths(sliced)["attention"] == ["SlicedAttnProcessor"] and fast_paths(sliced)["vae_slicing"] is True
    calls = []
    original = AutoencoderKL.tiled_decode

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "tiled_decode", counting)
    assert run_main(base + ["--outputdir", tiled, "--backend-option", "vae_tiling=true"]) == 0
    assert len(calls) == 2 and fast_paths(tiled)["vae_tiling"] is True  # one per batch of the 3 images
    assert fast_paths(plain)["vae_tiling"] is False and fast_paths(plain)["attention"] == ["AttnProcessor2_0"]
