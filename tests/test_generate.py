"""End to end on a tiny saved Stable Diffusion pipeline, through the real CLI."""
import json
import time

import numpy as np
import pytest
from helpers import image_bytes, kill_midway, load_voc, read_jsonl, run_cli, run_main, write_classfile
from PIL import Image


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    d = tmp_path_factory.mktemp("classes")
    path = d / "classes.txt"
    path.write_text("dog\ndiningtable: dining table\ncat\n")
    return path


@pytest.fixture(scope="module")
def baseline(tiny_sd_args, classes, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "baseline"
    res = run_cli(["--num", 7, "--classfile", classes, "--outputdir", out, "--batch-size", 4, *tiny_sd_args])
    assert res.returncode == 0, res.stderr
    return out


def test_dataset_loads_in_torchvision(baseline):
    ds = load_voc(baseline)
    assert len(ds) == 7
    labels = []
    for img, target in ds:
        ann = target["annotation"]
        assert img.size == (int(ann["size"]["width"]), int(ann["size"]["height"])) == (64, 64)
        (obj,) = ann["object"]
        box = obj["bndbox"]
        assert (box["xmin"], box["ymin"], box["xmax"], box["ymax"]) == ("1", "1", "64", "64")
        labels.append(obj["name"])
    # quotas 3/2/2 in class-file order; labels are the file's labels, not display names
    assert labels == ["dog"] * 3 + ["diningtable"] * 2 + ["cat"] * 2
    train, val = load_voc(baseline, "train"), load_voc(baseline, "val")
    train_ids, val_ids = set(train.images), set(val.images)
    assert not train_ids & val_ids and train_ids | val_ids == set(ds.images)


def test_layout_split_files_and_metadata(baseline):
    main = baseline / "VOC2007" / "ImageSets" / "Main"
    ids = [f"{i:06d}" for i in range(1, 8)]
    assert (main / "trainval.txt").read_bytes() == "".join(i + "\n" for i in ids).encode()
    for split in ("trainval", "train", "val"):
        split_ids = (main / f"{split}.txt").read_text().split()
        assert split_ids == sorted(split_ids) and len(split_ids) >= 2
        for label in ("dog", "diningtable", "cat"):
            rows = [line.split() for line in (main / f"{label}_{split}.txt").read_text().splitlines()]
            assert [r[0] for r in rows] == split_ids
            assert all(r[1] in ("1", "-1") for r in rows)
    meta = read_jsonl(baseline / "metadata.jsonl")
    assert [m["id"] for m in meta] == ids
    assert meta[3]["class"] == "diningtable" and meta[3]["prompt"] == "A photo of a dining table."
    run = json.loads((baseline / "run.json").read_text())
    assert run["status"] == "complete" and run["counts"] == {"kept": 7, "target": 7, "attempts": 7}
    assert run["models"]["generator"]["pipeline"] == "StableDiffusionPipeline"
    assert "torch" in run["versions"] and run["options"]["seed"] == 0
    assert (baseline / "prompts" / "dog.txt").read_text() == "A photo of a dog.\n" * 3
    for p in (baseline / "VOC2007" / "JPEGImages").glob("*.jpg"):
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and 0x0112 not in im.getexif()


def test_same_command_twice_gives_identical_bytes(baseline, tiny_sd_args, classes, tmp_path):
    out = tmp_path / "again"
    res = run_cli(["--num", 7, "--classfile", classes, "--outputdir", out, "--batch-size", 4, *tiny_sd_args])
    assert res.returncode == 0, res.stderr
    assert image_bytes(out) == image_bytes(baseline)
    assert (out / "metadata.jsonl").read_bytes() == (baseline / "metadata.jsonl").read_bytes()


def test_batch_size_does_not_change_the_dataset(baseline, tiny_sd_args, classes, tmp_path):
    out = tmp_path / "bs1"
    res = run_cli(["--num", 7, "--classfile", classes, "--outputdir", out, "--batch-size", 1, *tiny_sd_args])
    assert res.returncode == 0, res.stderr
    assert (out / "metadata.jsonl").read_text() == (baseline / "metadata.jsonl").read_text()
    for name, data in image_bytes(baseline).items():
        a = np.asarray(Image.open(baseline / "VOC2007" / "JPEGImages" / name), dtype=np.float32)
        b = np.asarray(Image.open(out / "VOC2007" / "JPEGImages" / name), dtype=np.float32)
        assert np.abs(a - b).mean() < 1.0, name  # float noise only, on a 0..255 scale


def test_finished_run_loads_no_model(baseline, tiny_sd_args, classes, monkeypatch, capsys):
    import imaginarynet.work as work
    from imaginarynet.cli import main

    def boom(*a, **k):
        raise AssertionError("a model was loaded for a finished run")

    monkeypatch.setattr(work, "StageSet", boom)
    before = image_bytes(baseline)
    t0 = time.time()
    with pytest.raises(SystemExit) as exc:
        main(["--num", "7", "--classfile", str(classes), "--outputdir", str(baseline), "--batch-size", "2",
              *map(str, tiny_sd_args)])
    assert exc.value.code == 0
    assert time.time() - t0 < 2.0
    assert "already complete" in capsys.readouterr().err
    assert image_bytes(baseline) == before


def test_changed_options_are_refused_then_overwrite_works(tiny_sd_args, classes, tmp_path):
    out = tmp_path / "refuse"
    base = ["--num", 3, "--classfile", classes, "--outputdir", out, *tiny_sd_args]
    assert run_cli(base).returncode == 0
    res = run_cli(base + ["--seed", 5, "--template", "a {name}"])
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "seed" in res.stderr and "template" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert len(list((out / "VOC2007" / "JPEGImages").glob("*.jpg"))) == 3  # nothing lost
    res = run_cli(base + ["--seed", 5, "--overwrite", "--num", 6])
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "run.json").read_text())["options"]["seed"] == 5
    assert len(list((out / "VOC2007" / "JPEGImages").glob("*.jpg"))) == 6


def test_kill_9_then_resume_equals_uninterrupted(tiny_sd_args, tmp_path):
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat", "bird"])
    args = ["--num", 30, "--classfile", classes, "--batch-size", 3, *tiny_sd_args]
    full = tmp_path / "full"
    assert run_cli(args + ["--outputdir", full]).returncode == 0
    killed = tmp_path / "killed"
    kill_midway(args + ["--outputdir", killed], killed, min_lines=9)
    # killed a third of the way in: the run is recorded as running and nothing was assembled yet
    assert json.loads((killed / "run.json").read_text())["status"] == "running"
    assert not (killed / "metadata.jsonl").exists()
    res = run_cli(args + ["--outputdir", killed])
    assert res.returncode == 0, res.stderr
    assert image_bytes(killed) == image_bytes(full)
    assert (killed / "metadata.jsonl").read_bytes() == (full / "metadata.jsonl").read_bytes()
    assert read_jsonl(killed / ".state" / "ledger.jsonl") == read_jsonl(full / ".state" / "ledger.jsonl")


def test_safety_checker_flags_are_dropped_not_written(tmp_path):
    import torch
    from diffusers import StableDiffusionPipeline
    from tiny_models import build_tiny_sd

    model = build_tiny_sd(tmp_path / "sd-checked", safety_checker=True)
    pipe = StableDiffusionPipeline.from_pretrained(model)
    with torch.no_grad():  # every cosine clears a threshold of -1: everything is flagged
        pipe.safety_checker.concept_embeds_weights.fill_(-1.0)
        pipe.safety_checker.special_care_embeds_weights.fill_(-1.0)
    flagged_model = tmp_path / "sd-flags-all"
    pipe.save_pretrained(flagged_model)
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    base = ["--num", 2, "--classfile", classes, "--steps", 2, "--resolution", 64, "--sd-model", flagged_model,
            "--max-attempts", 3]
    res = run_cli(base + ["--outputdir", tmp_path / "checked"])
    assert res.returncode == 0, res.stderr
    assert "short of its quota: 0/1 kept after 3 attempts" in res.stderr
    ledger = read_jsonl(tmp_path / "checked" / ".state" / "ledger.jsonl")
    assert len(ledger) == 6 and {r["status"] for r in ledger} == {"flagged"}
    assert list((tmp_path / "checked" / "VOC2007" / "JPEGImages").glob("*.jpg")) == []
    res = run_cli(base + ["--outputdir", tmp_path / "unchecked", "--no-safety-checker"])
    assert res.returncode == 0, res.stderr
    assert len(list((tmp_path / "unchecked" / "VOC2007" / "JPEGImages").glob("*.jpg"))) == 2


def _seed(label: str, k: int, run_seed: int = 0) -> int:
    """The attempt seed, computed here from its documented formula (not the product's function)."""
    import hashlib

    digest = hashlib.sha256(f"{run_seed}\x00{label}\x00{k}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFFFFFF


def test_safety_checker_drops_some_images_and_the_refill_succeeds(tiny_sd_args, tmp_path, monkeypatch):
    """The checker flags a planted set of attempts (recognised by their generator seeds): those are never
    written, later attempts fill the quota, and the kept set is the first q unflagged attempts per class."""
    import numpy as np
    from diffusers import StableDiffusionPipeline

    planted = {("dog", 0), ("dog", 2), ("cat", 1)}
    flagged_seeds = {_seed(label, k) for label, k in planted}
    original = StableDiffusionPipeline.__call__

    def checker(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        flags = [g.initial_seed() in flagged_seeds for g in kwargs["generator"]]
        for i, flag in enumerate(flags):
            if flag:  # what diffusers' checker does: a black image and the flag
                out.images[i] = np.zeros_like(out.images[i])
        out.nsfw_content_detected = flags
        return out

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", checker)
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    out = tmp_path / "refill"
    assert run_main(["--per-class", 2, "--classfile", classes, "--outputdir", out, "--batch-size", 2,
                     "--no-report", *tiny_sd_args]) == 0
    meta = read_jsonl(out / "metadata.jsonl")
    assert [(m["class"], m["attempt"]) for m in meta] == [("dog", 1), ("dog", 3), ("cat", 0), ("cat", 2)]
    ledger = read_jsonl(out / ".state" / "ledger.jsonl")
    assert {(r["class"], r["k"]) for r in ledger if r["status"] == "flagged"} == planted
    for m in meta:  # nothing black was written
        assert np.asarray(Image.open(out / m["file_name"])).max() > 0
    assert json.loads((out / "run.json").read_text())["shortfalls"] == []
