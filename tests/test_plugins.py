"""Third-party backends (entry points, module:Class) and any diffusers pipeline (SDXL)."""
import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import load_voc, read_jsonl, run_cli, write_classfile

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "imaginarynet_solid"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    """The documented example plugin, 'installed' with its own dist-info and entry points,
    plus a broken plugin whose module does not import."""
    root = tmp_path_factory.mktemp("site")
    shutil.copytree(EXAMPLE, root / "imaginarynet_solid")
    info = root / "imaginarynet_solid-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: imaginarynet-solid\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[imaginarynet.backends]\nsolid = imaginarynet_solid:SolidBackend\nbroken = imaginarynet_missing:Backend\n")
    return root


def run_with(plugin_path, args):
    env_path = os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")])
    return run_cli(args, env={**os.environ, "PYTHONPATH": env_path})


def test_backends_lists_plugins_and_reports_broken_ones(plugin_path):
    res = run_with(plugin_path, ["backends"])
    assert res.returncode == 0, res.stderr
    lines = {line.split()[0]: line for line in res.stdout.splitlines()}
    assert "built-in" in lines["stablediffusion"] and "[ok]" in lines["dalle-mini"]
    assert "plugin imaginarynet-solid 0.1" in lines["solid"] and lines["solid"].endswith("[ok]")
    assert "broken: ModuleNotFoundError" in lines["broken"]


def test_plugin_backend_by_entry_point_name(plugin_path, tmp_path):
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    out = tmp_path / "out"
    base = ["--backend", "solid", "--num", 4, "--classfile", classes, "--outputdir", out, "--resolution", 48]
    res = run_with(plugin_path, base + ["--backend-option", "shade=0.5"])
    assert res.returncode == 0, res.stderr
    ds = load_voc(out)
    assert len(ds) == 4 and all(img.size == (48, 48) for img, _ in ds)
    run = json.loads((out / "run.json").read_text())
    assert run["options"]["backend_options"] == {"shade": 0.5}
    assert run["models"]["generator"] == {"backend": "solid", "shade": 0.5}
    # the option is part of the fingerprint: another value is refused, the default too
    res = run_with(plugin_path, base + ["--backend-option", "shade=0.25"])
    assert res.returncode == 2 and "backend_options" in res.stderr
    res = run_with(plugin_path, base)  # no option: the plugin's default shade 1.0, also another value
    assert res.returncode == 2 and "backend_options" in res.stderr
    res = run_with(plugin_path, base + ["--backend-option", "shade=7", "--overwrite"])
    assert res.returncode == 2 and "solid: shade must be a number in [0, 1], got 7" in res.stderr


def test_plugin_backend_by_module_path(plugin_path, tmp_path):
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    out = tmp_path / "out"
    res = run_with(plugin_path, ["--backend", "imaginarynet_solid:SolidBackend", "--num", 2, "--classfile", classes,
                                 "--outputdir", out, "--resolution", 32])
    assert res.returncode == 0, res.stderr
    assert len(read_jsonl(out / "metadata.jsonl")) == 2


@pytest.mark.parametrize("backend, message", [
    ("broken", "backend 'broken' (imaginarynet_missing:Backend, plugin imaginarynet-solid 0.1) cannot be loaded: "
               "ModuleNotFoundError"),
    ("no_such_module:Thing", "cannot be loaded: ModuleNotFoundError"),
    ("imaginarynet_solid:Nope", "cannot be loaded: AttributeError"),
    ("nope", "unknown backend 'nope' (available: stablediffusion, dalle-mini, solid, broken"),
])
def test_bad_backends_are_one_line_errors(plugin_path, tmp_path, backend, message):
    res = run_with(plugin_path, ["--backend", backend, "--num", 20, "--classfile", "voc", "--outputdir", tmp_path])
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and message in res.stderr


def test_sdxl_pipeline_with_family_defaults(tmp_path):
    from tiny_models import build_tiny_sdxl

    model = build_tiny_sdxl(tmp_path / "sdxl")
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    out = tmp_path / "out"
    res = run_cli(["--sd-model", model, "--num", 2, "--classfile", classes, "--outputdir", out, "--steps", 2])
    assert res.returncode == 0, res.stderr
    run = json.loads((out / "run.json").read_text())
    family = run["options"]["family"]
    assert family["family"] == "sdxl" and family["pipeline"] == "StableDiffusionXLPipeline"
    # native size = unet sample_size 8 x VAE factor 8; SDXL's guidance default 5.0
    assert run["options"]["resolution"] == family["resolution"] == 64 and run["options"]["guidance"] == 5.0
    assert run["models"]["generator"]["pipeline"] == "StableDiffusionXLPipeline"
    ds = load_voc(out)
    assert [img.size for img, _ in ds] == [(64, 64), (64, 64)]


def test_turbo_checkpoints_get_turbo_defaults(tmp_path, tiny):
    from imaginarynet.backends.sd_families import family_defaults

    turbo = tmp_path / "sd-turbo"
    shutil.copytree(tiny["sd"], turbo)
    assert family_defaults(str(turbo)) == {"family": "sd-turbo", "pipeline": "StableDiffusionPipeline",
                                           "steps": 1, "guidance": 0.0, "resolution": 512}
    assert family_defaults(str(tiny["sd"]))["steps"] == 50


def test_plugin_written_for_the_run_config_contract_still_runs(plugin_path, tmp_path):
    """A plugin of the first contract, __init__(self, cfg), gets the whole RunConfig and one FutureWarning
    line; its dataset is the one the same plugin on the current contract makes."""
    legacy = tmp_path / "site"
    legacy.mkdir()
    (legacy / "legacy_solid.py").write_text(
        "from imaginarynet_solid import SolidBackend\n\n\n"
        "class Legacy(SolidBackend):\n"
        "    def __init__(self, cfg):\n"
        "        super().__init__(None, cfg.backend_options, None) if False else None\n"
        "        self.size, self.shade = cfg.resolution, cfg.backend_options['shade']\n")
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    common = ["--num", 4, "--classfile", classes, "--resolution", 24, "--backend-option", "shade=0.5"]
    path = os.pathsep.join([str(legacy), str(plugin_path)])
    old = run_with(path, common + ["--backend", "legacy_solid:Legacy", "--outputdir", tmp_path / "old"])
    new = run_with(plugin_path, common + ["--backend", "solid", "--outputdir", tmp_path / "new"])
    assert old.returncode == 0 and new.returncode == 0, old.stderr + new.stderr
    warned = [line for line in old.stderr.splitlines() if "FutureWarning" in line]
    assert len(warned) == 1 and "__init__(cfg) is deprecated" in warned[0], old.stderr
    assert "FutureWarning" not in new.stderr
    images = sorted((tmp_path / "old" / "VOC2007" / "JPEGImages").iterdir())
    assert len(images) == 4
    for image in images:
        assert image.read_bytes() == (tmp_path / "new" / "VOC2007" / "JPEGImages" / image.name).read_bytes()
