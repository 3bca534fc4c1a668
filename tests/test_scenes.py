"""Scenes (--objects-per-image): several classes per image, every one verified, multi-label in every format."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    FIXTURES,
    kill_midway,
    load_voc,
    read_jsonl,
    report_rows,
    run_cli,
    run_main,
    ultralytics_labels,
    write_classfile,
)

from imaginarynet.filters.clip import decide, decide_scene
from imaginarynet.scenes import draw_scene, english_names

LABELS = ["dog", "cat", "apple", "horse"]
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1")  # byte-identical floats whatever runs where


# --- the draw --------------------------------------------------------------------------------------------

def documented_draw(seed, labels, p, k, lo, hi, weights):
    """scenes.py's docstring formula, written out again from the text."""
    def u(what):
        digest = hashlib.sha256(f"scene\x00{seed}\x00{labels[p]}\x00{k}\x00{what}".encode()).digest()
        return (int.from_bytes(digest[:8], "little") >> 11) / 2 ** 53

    chosen = [p]
    for j in range(1, lo + int(u("count") * (hi - lo + 1))):
        rest = [x for x in range(len(labels)) if x not in chosen]
        w = [math.prod(weights.get(labels[y], {}).get(labels[x], 1.0) for y in chosen) for x in rest]
        if sum(w) == 0:
            break
        cumulative = np.cumsum(w)
        chosen.append(rest[int(np.searchsorted(cumulative, u(str(j)) * sum(w), side="right"))])
    return chosen


def test_the_draw_is_the_documented_pure_function():
    """Catches a draw that depends on anything but (seed, class, k), repeats a class, drops the primary, or
    strays from the formula users may reproduce."""
    weights = {"dog": {"horse": 5.0, "apple": 0.0}, "horse": {"dog": 5.0}, "apple": {"dog": 0.0}}
    for seed in (0, 7):
        for p in range(4):
            for k in range(60):
                scene = draw_scene(seed, LABELS, p, k, 1, 3, weights)
                assert scene == documented_draw(seed, LABELS, p, k, 1, 3, weights)
                assert scene[0] == p and len(set(scene)) == len(scene) and 1 <= len(scene) <= 3
                assert not {0, 2} <= set(scene)  # dog + apple is forbidden
    assert draw_scene(0, LABELS, 1, 5, 1, 3) != draw_scene(1, LABELS, 1, 5, 1, 3) or \
        draw_scene(0, LABELS, 1, 6, 1, 3) != draw_scene(1, LABELS, 1, 6, 1, 3)


def test_counts_are_uniform_and_weights_bias_the_partners():
    sizes = Counter(len(draw_scene(0, LABELS, 0, k, 1, 3)) for k in range(3000))
    assert all(abs(sizes[n] / 3000 - 1 / 3) < 0.04 for n in (1, 2, 3)), sizes
    plain = Counter(draw_scene(0, LABELS, 1, k, 2, 2)[1] for k in range(3000))
    assert all(abs(plain[x] / 3000 - 1 / 3) < 0.04 for x in (0, 2, 3)), plain
    favoured = Counter(draw_scene(0, LABELS, 1, k, 2, 2, {"cat": {"horse": 8.0}, "horse": {"cat": 8.0}})[1]
                       for k in range(3000))
    assert abs(favoured[3] / 3000 - 0.8) < 0.04, favoured  # 8 / (1 + 1 + 8)


def test_names_in_english_with_articles():
    assert english_names(["dog"]) == "a dog"
    assert english_names(["dog", "cat"]) == "a dog and a cat"
    assert english_names(["dog", "cat", "apple"]) == "a dog, a cat and an apple"


# --- the CLIP rule -------------------------------------------------------------------------------------------

def test_clip_scene_rule_against_hand_computed_softmax():
    """Catches a softmax over all classes (prompted classes competing with each other), a rule that checks
    only the primary, or probabilities not recorded per class."""
    cos = np.array([0.30, 0.29, 0.28, 0.10])  # dog, cat, apple, horse
    verdict = decide_scene(cos, [0, 1], 0.6, LABELS)  # dog + cat; apple and horse not prompted
    p_dog = 1 / (1 + math.exp(-2) + math.exp(-20))  # softmax over dog, apple, horse at 100 x cos
    p_cat = 1 / (1 + math.exp(-1) + math.exp(-19))  # softmax over cat, apple, horse
    assert [v["label"] for v in verdict["classes"]] == ["dog", "cat"]
    assert [v["prob"] for v in verdict["classes"]] == pytest.approx([p_dog, p_cat], abs=1e-6)
    assert verdict["accepted"] and verdict["prob"] == pytest.approx(p_cat, abs=1e-6)  # the weakest decides
    # apple above cat: cat loses to an unprompted class and the image fails, although dog passes
    cos = np.array([0.30, 0.29, 0.31, 0.10])
    verdict = decide_scene(cos, [0, 1], 0.6, LABELS)
    assert not verdict["accepted"] and verdict["top1"] == "apple"
    assert [v["accepted"] for v in verdict["classes"]] == [False, False]  # apple also beats dog
    verdict = decide_scene(np.array([0.40, 0.29, 0.31, 0.10]), [0, 1], 0.6, LABELS)
    assert [v["accepted"] for v in verdict["classes"]] == [True, False] and not verdict["accepted"]
    # one prompted class is exactly the original rule
    single = decide_scene(cos, [2], 0.6, LABELS)
    assert {k: single[k] for k in ("prob", "top1", "cos", "accepted")} == decide(cos, 2, 0.6, LABELS)


# --- bad input ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, cooc, message", [
    (["--objects-per-image", "0"], None, "--objects-per-image must be at least 1"),
    (["--objects-per-image", "3-2"], None, "--objects-per-image 3-2: MIN is above MAX"),
    (["--objects-per-image", "two"], None, "--objects-per-image wants N or MIN-MAX"),
    (["--objects-per-image", "5"], None, "more objects than the 4 classes"),
    (["--objects-per-image", "2"], "{not json", "not a readable JSON file"),
    (["--objects-per-image", "2"], '["dog"]', "want a JSON object"),
    (["--objects-per-image", "2"], '{"dog": {"zebra": 1}}', "unknown label 'zebra'"),
    (["--objects-per-image", "2"], '{"dog": {"cat": -1}}', "must be a number >= 0"),
    (["--objects-per-image", "2"], '{"dog": {"cat": 0}, "cat": {"dog": 2}}', "cat + dog is given twice, as 0 and 2"),
    (["--objects-per-image", "2"], '{"dog": {"cat": 0, "apple": 0, "horse": 0}}', "forbids every partner of 'dog'"),
    (["--objects-per-image", "3"], '{"dog": {"cat": 0, "apple": 0}}', "leaves 'dog' 1 partner(s)"),
    ([], '{"dog": {"cat": 2}}', "--cooccurrence needs --objects-per-image above 1"),
    (["--objects-per-image", "2", "--template", "{names} {nam}"], None, "--template may only contain"),
    (["--objects-per-image", "1-2", "--template", "a photo of a {name}"], None, "has no {names}: with"),
])
def test_bad_scene_options_are_one_line_exit_2_before_any_model(args, cooc, message, tmp_path, capsys, monkeypatch):
    from imaginarynet.backends.stable_diffusion import StableDiffusionBackend

    monkeypatch.setattr(StableDiffusionBackend, "load", lambda self: pytest.fail("a model loaded"))
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    if cooc is not None:
        (tmp_path / "cooc.json").write_text(cooc)
        args = args + ["--cooccurrence", tmp_path / "cooc.json"]
    code = run_main(["--num", 4, "--classfile", classes, "--outputdir", tmp_path / "out", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out" / "run.json").exists()


# --- one real dataset, made five ways ----------------------------------------------------------------------

SCENE_LABELS = ["dog", "chair", "bottle", "person"]  # names the tiny random CLIP splits its top-1 votes over

def scene_key(out: Path):
    """What must not depend on how the run was executed: compositions, prompts, seeds, the kept set."""
    ledger = sorted((r["class"], r["k"], tuple(r["labels"]), r["prompt"], r["seed"], r["status"])
                    for r in read_jsonl(out / ".state" / "ledger.jsonl"))
    kept = [(m["id"], m["class"], m["attempt"], tuple(m["labels"])) for m in read_jsonl(out / "metadata.jsonl")]
    return ledger, kept


@pytest.fixture(scope="module")
def scenes(tiny, tiny_sd_args, tmp_path_factory):
    d = tmp_path_factory.mktemp("scenes")
    classes = write_classfile(d / "c.txt", SCENE_LABELS)
    # threshold 0: each prompted class must only be CLIP's top-1 against the unprompted ones (a tiny random
    # CLIP rarely gives any class a high probability); still about two in three attempts are refilled
    base = ["--num", 8, "--classfile", classes, "--objects-per-image", "1-3", "--seed", 2, *tiny_sd_args,
            "--gpt", "--gpt-model", tiny["gpt2"], "--clip", "--clip-pretrained", f"local-dir:{tiny['clip']}",
            "--threshold", 0, "--max-attempts", 16, "--quiet"]
    out = d / "batch3"
    res = run_cli(base + ["--outputdir", out, "--batch-size", 3], env=ONE_THREAD)
    assert res.returncode == 0, res.stderr
    return d, base, out


def test_batch_size_workers_shards_and_kill_9_give_the_same_scenes(scenes):
    """Catches compositions or GPT-2 scene prompts that depend on batch size, worker or slice, and a resume
    that draws them again differently."""
    d, base, out = scenes
    ledger, kept = scene_key(out)
    statuses = Counter(s for *_, s in ledger)
    assert statuses["kept"] == 8 and statuses["rejected"] > 0  # the per-class CLIP rule really refills
    assert {len(labels) for *_, labels, _, _, _ in ledger} == {1, 2, 3}
    for name, extra in (("batch1", ["--batch-size", 1]), ("workers", ["--batch-size", 3, "--workers", 2])):
        res = run_cli(base + ["--outputdir", d / name, *extra], env=ONE_THREAD)
        assert res.returncode == 0, res.stderr
        assert scene_key(d / name) == (ledger, kept), name
    for i in (0, 1):
        res = run_cli(base + ["--outputdir", d / "shards", "--batch-size", 3, "--shard", f"{i}/2"], env=ONE_THREAD)
        assert res.returncode == 0, res.stderr
    assert scene_key(d / "shards")[1] == kept
    killed = d / "killed"
    kill_midway(base + ["--outputdir", killed, "--batch-size", 3], killed, min_lines=3, env=ONE_THREAD)
    res = run_cli(base + ["--outputdir", killed, "--batch-size", 3], env=ONE_THREAD)
    assert res.returncode == 0, res.stderr
    assert scene_key(killed) == (ledger, kept)
    # a resume issues exactly the units an uninterrupted run would: the same bytes. (Workers and shards batch
    # other attempts together, which moves pixels and CLIP scores by float noise only.)
    assert (killed / "metadata.jsonl").read_bytes() == (out / "metadata.jsonl").read_bytes()
    for m in read_jsonl(out / "metadata.jsonl"):
        assert (killed / m["file_name"]).read_bytes() == (out / m["file_name"]).read_bytes()


def test_prompts_name_every_prompted_class_and_clip_judged_each(scenes):
    _, _, out = scenes
    for r in read_jsonl(out / ".state" / "ledger.jsonl"):
        assert r["labels"][0] == r["class"]
        if len(r["labels"]) == 1:
            assert r["prompt"].startswith(f"A photo of a {r['class']}")
            assert "classes" not in r["score"]
        else:
            assert r["prompt"].startswith("A photo of " + english_names(r["labels"]))
            assert [v["label"] for v in r["score"]["classes"]] == r["labels"]
            assert r["score"]["accepted"] == all(v["accepted"] for v in r["score"]["classes"])
        assert (r["status"] == "kept") == r["score"]["accepted"]


def test_labels_read_back_by_the_loaders(scenes, tiny, tmp_path):
    """Catches a writer that labels only the primary class: VOC via torchvision and the per-class split files
    (what OICR/PCL/mmdetection read), COCO via pycocotools, Detic pos ids, imagefolder via datasets, YOLO lines;
    and summary counts that are not the dataset's."""
    from pycocotools.coco import COCO

    _, _, out = scenes
    meta = read_jsonl(out / "metadata.jsonl")
    labels_of = {m["id"]: m["labels"] for m in meta}
    assert any(len(v) > 1 for v in labels_of.values())
    for (_, target), m in zip(load_voc(out), meta):
        objects = target["annotation"]["object"]
        assert [o["name"] for o in objects] == m["labels"]
        assert all(o["bndbox"] == {"xmin": "1", "ymin": "1", "xmax": str(m["width"]), "ymax": str(m["height"])}
                   for o in objects)
    main = out / "VOC2007" / "ImageSets" / "Main"
    for label in SCENE_LABELS:
        rows = dict(line.split() for line in (main / f"{label}_trainval.txt").read_text().splitlines())
        assert {i for i, v in rows.items() if v == "1"} == {i for i, ls in labels_of.items() if label in ls}
    assert run_cli(["export", out, "--format", "coco"]).returncode == 0
    coco = COCO(str(out / "exports" / "coco_trainval.json"))
    for i, ls in labels_of.items():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[int(i)]))
        assert sorted(coco.loadCats(a["category_id"])[0]["name"] for a in anns) == sorted(ls)
    res = run_cli(["export", out, "--format", "detic", "--clip-pretrained", f"local-dir:{tiny['clip']}"])
    assert res.returncode == 0, res.stderr
    info = json.loads((out / "exports" / "detic" / "image_info.json").read_text())
    for im in info["images"]:
        want = sorted(SCENE_LABELS.index(x) + 1 for x in labels_of[f"{im['id']:06d}"])
        assert sorted(im["pos_category_ids"]) == want
    counts = Counter(x for ls in labels_of.values() for x in ls)
    cat_info = json.loads((out / "exports" / "detic" / "cat_info.json").read_text())
    assert {c["id"]: c["image_count"] for c in cat_info} == {SCENE_LABELS.index(x) + 1: counts[x] for x in SCENE_LABELS}
    assert run_cli(["export", out, "--format", "imagefolder"]).returncode == 0
    import datasets

    hf = datasets.load_dataset("imagefolder", data_dir=str(out / "exports" / "imagefolder" / "trainval"),
                               split="train")
    assert sorted(map(tuple, hf["labels"])) == sorted(tuple(ls) for ls in labels_of.values())
    assert run_cli(["export", out, "--format", "yolo"]).returncode == 0
    read = ultralytics_labels(out / "exports" / "yolo" / "data.yaml", tmp_path)  # ultralytics' own loader
    assert {i for split in ("train", "val") for i in read[split]} == set(labels_of)
    for split in ("train", "val"):
        for i, got in read[split].items():
            assert [SCENE_LABELS[c] for c in got["cls"]] == labels_of[i]
            assert got["xywhn"] == [[0.5, 0.5, 1.0, 1.0]] * len(labels_of[i])
    for fmt in ("voc", "coco", "yolo", "detic"):
        assert run_cli(["check", out, "--format", fmt]).returncode == 0, fmt
    run = json.loads((out / "run.json").read_text())
    assert run["labels"] == {x: counts[x] for x in SCENE_LABELS}
    pairs = Counter((a, b) for ls in labels_of.values() for a in ls for b in ls if a != b)
    assert run["cooccurrence"] == {a: {b: pairs[a, b] for b in SCENE_LABELS if b != a} for a in SCENE_LABELS}
    assert [r["labeled"] for r in run["per_class"]] == [counts[x] for x in SCENE_LABELS]
    assert Counter(m["class"] for m in meta) == {x: 2 for x in SCENE_LABELS}  # quotas stay per primary class


def test_check_finds_a_split_file_that_drops_an_extra_label(scenes, tmp_path):
    """Catches a check that validates the split files against the primary class only."""
    _, _, out = scenes
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns(".state", "exports", "report"))
    m = next(m for m in read_jsonl(copy / "metadata.jsonl") if len(m["labels"]) > 1)
    path = copy / "VOC2007" / "ImageSets" / "Main" / f"{m['labels'][1]}_trainval.txt"
    path.write_text(path.read_text().replace(f"{m['id']} 1\n", f"{m['id']} -1\n"))
    res = run_cli(["check", copy])
    assert res.returncode == 1
    assert f"{m['labels'][1]}_trainval.txt: line for {m['id']} should be '{m['id']} 1'" in res.stdout + res.stderr


def test_report_shows_the_cooccurrence_matrix(scenes):
    _, _, out = scenes
    assert run_cli(["report", out]).returncode == 0
    meta = read_jsonl(out / "metadata.jsonl")
    pairs = Counter((a, b) for m in meta for a in m["labels"] for b in m["labels"] if a != b)
    rows = report_rows((out / "report" / "index.html").read_text(), "data-cooccurrence")
    for a in SCENE_LABELS:
        cells = ["·" if a == b else str(pairs[a, b]) for b in SCENE_LABELS]
        want = [a, str(sum(a in m["labels"] for m in meta))] + cells
        assert rows[a] == want


# --- planted verdicts through the real pipeline ---------------------------------------------------------

def planted_row(label: str, k: int) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{label}/{k}".encode()).digest()[:4], "little"))
    return rng.uniform(0.20, 0.24, len(LABELS))


def test_planted_clip_similarities_decide_each_scene(pattern, tiny, tmp_path, monkeypatch):
    """The test's own softmax over {c} and the unprompted classes, on planted similarities, must give every
    recorded per-class probability and every keep/reject: catches prompted classes competing with each
    other, a rule that checks only the primary, and any other reading of the rule."""
    from imaginarynet.filters.clip import ClipFilter

    monkeypatch.setattr(ClipFilter, "cosines", lambda self, cands: np.stack([planted_row(c.label, c.k)
                                                                             for c in cands]))
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    out = tmp_path / "out"
    assert run_main(["--per-class", 3, "--classfile", classes, "--outputdir", out, "--objects-per-image", "1-3",
                     "--backend", "pattern_backend:Pattern", "--clip", "--clip-pretrained",
                     f"local-dir:{tiny['clip']}", "--threshold", 0.45, "--no-report", "--quiet"]) == 0
    records = read_jsonl(out / ".state" / "ledger.jsonl")
    outcomes = Counter()
    for r in records:
        cos = planted_row(r["class"], r["k"])
        prompted = [LABELS.index(x) for x in r["labels"]]
        verdicts = []
        for c in prompted:
            pool = [c] + [j for j in range(len(LABELS)) if j not in prompted]
            p = np.exp(100 * cos[pool]) / np.exp(100 * cos[pool]).sum()
            verdicts.append((float(p[0]), bool(p.argmax() == 0 and p[0] >= 0.45)))
        got = [(v["prob"], v["accepted"]) for v in r["score"]["classes"]] if len(prompted) > 1 else \
            [(r["score"]["prob"], r["score"]["accepted"])]
        assert [g[1] for g in got] == [v[1] for v in verdicts]
        assert [g[0] for g in got] == pytest.approx([v[0] for v in verdicts], abs=2e-6)
        assert (r["status"] == "kept") == all(ok for _, ok in verdicts)
        outcomes[len(prompted) > 1, r["status"]] += 1
    assert outcomes[True, "kept"] and outcomes[True, "rejected"], outcomes  # the planted data covers both


def test_planted_boxes_every_prompted_class_needs_one(pattern, tiny, tmp_path, monkeypatch):
    """With a detector each prompted class needs its own box: a scene missing one is rejected ("no box"), a kept
    scene writes its prompted classes' boxes as VOC objects and another class's box only on request."""
    from imaginarynet.detectors.zero_shot import OwlDetector

    def planted(self, candidates):
        out = []
        for c in candidates:
            prompted = [LABELS[j] for j in c.classes]
            have = prompted if c.k % 2 == 0 else prompted[:-1]  # odd attempts miss their last class's box
            boxes = [{"label": x, "score": 0.9, "box": [2.0 * i, 3.0, 20.0 + i, 30.0], "query": x}
                     for i, x in enumerate(have)]
            spare = next(x for x in LABELS if x not in prompted) if len(prompted) < len(LABELS) else None
            if spare:
                boxes.append({"label": spare, "score": 0.8, "box": [1.0, 1.0, 9.0, 9.0], "query": spare})
            out.append(boxes)
        return out

    monkeypatch.setattr(OwlDetector, "detect", planted)
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    for other in (False, True):
        out = tmp_path / f"other-{other}"
        assert run_main(["--per-class", 2, "--classfile", classes, "--outputdir", out, "--objects-per-image", "2",
                         "--backend", "pattern_backend:Pattern", "--detector", tiny["owlv2"], "--no-report",
                         "--quiet"] + ["--label-other-detections"] * other) == 0
        for r in read_jsonl(out / ".state" / "ledger.jsonl"):
            assert r["status"] == ("kept" if r["k"] % 2 == 0 else "rejected")
            assert r.get("reason") == (None if r["k"] % 2 == 0 else "no box")
        for (_, target), m in zip(load_voc(out), read_jsonl(out / "metadata.jsonl")):
            names = [o["name"] for o in target["annotation"]["object"]]
            spare = [b["label"] for b in m["detections"] if b["label"] not in m["labels"]]
            assert names == m["labels"] + (spare if other else [])


def test_llm_scene_captions_must_name_every_class(tmp_path):
    from imaginarynet.prompts.llm import clean_caption

    assert clean_caption("A dog chases a cat across the lawn.", ["dog", "cat"]) == \
        "A dog chases a cat across the lawn."
    assert clean_caption("A dog runs across the lawn.", ["dog", "cat"]) is None


# --- one object per image is what it was -----------------------------------------------------------------

def same_up_to_float_noise(a, b) -> bool:
    """Equal JSON values, floats within the noise of a different CPU (detector scores ~1e-4, box corners 0.01
    px; both are rounded when recorded, so a last digit may move)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 0.02 + 1e-3 * abs(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_up_to_float_noise(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_up_to_float_noise(x, y) for x, y in zip(a, b))
    return a == b


def assert_same_file(got: Path, want: Path) -> None:
    """The same bytes; where the fixture's machine had other float kernels (it was made on another CPU), a
    JSON-lines file holds the same records up to float noise and a JPEG the same picture (mean |diff| < 1)."""
    a, b = got.read_bytes(), want.read_bytes()
    if a == b:
        return
    if got.suffix == ".jpg":
        from PIL import Image

        x, y = (np.asarray(Image.open(p), float) for p in (got, want))
        assert x.shape == y.shape and np.abs(x - y).mean() < 1.0, got
    elif got.suffix == ".jsonl":
        rows = [[json.loads(line) for line in data.splitlines()] for data in (a, b)]
        assert same_up_to_float_noise(*rows), got
    else:
        assert a == b, got  # XML (integer VOC corners), split files, prompts: exactly


def test_one_object_per_image_reproduces_the_dataset_made_before_scenes(tiny, tmp_path):
    """tests/fixtures/single_object_v1 was made by the code before this feature (its README says how); the same
    command now must write the same files (byte for byte on the fixture's CPU; up to float noise in model
    outputs on another) and the same data options (so the same fingerprint: old runs resume)."""
    fixture = FIXTURES / "single_object_v1"
    classes = tmp_path / "c3.txt"
    classes.write_text("dog\ncat\nbird: small bird\n")
    out = tmp_path / "out"
    res = run_cli(["--num", 6, "--classfile", classes, "--outputdir", out, "--seed", 3, "--batch-size", 3,
                   "--sd-model", tiny["sd"], "--steps", 2, "--resolution", 64, "--gpt", "--gpt-model", tiny["gpt2"],
                   "--detector", tiny["owlv2"], "--box-threshold", 0.75, "--no-report"], env=ONE_THREAD)
    assert res.returncode == 0, res.stderr
    want = sorted(p.relative_to(fixture) for p in fixture.rglob("*") if p.is_file()
                  and p.name not in ("README.md", "fingerprint.json", "ledger.jsonl"))
    got = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and ".state" not in p.parts
                 and p.name not in ("run.json", ".imaginarynet.lock"))
    assert got == want
    for rel in want:  # byte for byte, but for the float noise another CPU's kernels add to models' outputs
        assert_same_file(out / rel, fixture / rel)
    assert_same_file(out / ".state" / "ledger.jsonl", fixture / "ledger.jsonl")
    old = json.loads((fixture / "fingerprint.json").read_text())
    run = json.loads((out / "run.json").read_text())
    mapped = {k: str(tiny[Path(v).name]) if isinstance(v, str) and v.startswith("/tmp/tiny/") else v
              for k, v in old["data_options"].items()}
    assert run["data_options"] == mapped
    blob = json.dumps(old["data_options"], sort_keys=True, default=str)
    assert hashlib.sha256(blob.encode()).hexdigest()[:16] == old["fingerprint"]  # the formula is unchanged
    shutil.rmtree(out)


# --- prompt models on scenes ---------------------------------------------------------------------------------

def test_gpt2_scene_block_rows_see_only_their_own_prefix(tiny, tmp_path):
    """A scene block continues 16 different prefixes in one left-padded batch. Every row's logits at every step
    must equal that row's prefix plus its own sampled tokens run alone: catches a missing attention mask or
    position ids (padding would shift or leak into the rows), and a mask not extended as tokens are added."""
    import torch

    from imaginarynet.classes import ImageClass
    from imaginarynet.config import RunConfig, validate
    from imaginarynet.prompts import create_prompt_source
    from imaginarynet.prompts.gpt2 import BLOCK

    cfg = validate(RunConfig(classfile="x", classes=[ImageClass(x, x) for x in LABELS], outputdir=tmp_path,
                             gpt=True, gpt_model=str(tiny["gpt2"]), gpt_max_tokens=18, template=None,
                             objects_per_image="1-3", sd_model=str(tiny["sd"])))
    gpt = create_prompt_source(cfg, tmp_path / ".state")
    gpt.load()
    steps, forward = [], gpt.model.forward

    def recording(*args, **kwargs):
        res = forward(*args, **kwargs)
        steps.append((kwargs["input_ids"].clone(), res.logits[:, -1, :].clone()))
        return res

    gpt.model.forward = recording
    prompts = gpt.prompts(cfg.classes[1], list(range(BLOCK)))
    gpt.model.forward = forward
    prefixes = [gpt.prefix([c.name for c in (cfg.classes[j] for j in _scene(cfg, 1, k))]) for k in range(BLOCK)]
    assert len({len(gpt.tokenizer(p).input_ids) for p in prefixes}) > 1  # the batch really needed padding
    assert len(steps) == 18 - min(len(gpt.tokenizer(p).input_ids) for p in prefixes)
    sampled = torch.cat([ids for ids, _ in steps[1:]], dim=1)  # the token chosen at each step, per row
    for row, prefix in enumerate(prefixes):
        ids = gpt.tokenizer(prefix, return_tensors="pt").input_ids
        with torch.inference_mode():
            for t, (_, logits) in enumerate(steps):
                alone = gpt.model(input_ids=torch.cat([ids, sampled[row:row + 1, :t]], dim=1)).logits[0, -1]
                torch.testing.assert_close(logits[row], alone, atol=1e-4, rtol=1e-4)
        assert prompts[row].startswith(prefix)


def _scene(cfg, c, k):
    from imaginarynet.scenes import Scenes

    return Scenes.of(cfg).classes_of(c, k)


# --- pair weights from a real dataset ----------------------------------------------------------------------

def test_cooccurrence_command_computes_lift_and_its_file_drives_generate(tmp_path, capsys):
    """`imaginarynet cooccurrence VOC`: catches a weight that is not the lift n(a,b)·N / (n(a)·n(b)), an
    asymmetric file, names outside the class file counted, the split ignored, and output generate cannot read."""
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    images = {"a1": ["dog", "person", "dog"], "a2": ["dog", "person"], "a3": ["horse", "person"], "a4": ["cat"],
              "a5": ["dog"], "a6": ["sofa", "horse"], "a7": ["dog", "cat"]}  # a7 is outside the split
    for name, objects in images.items():
        body = "".join(f"<object><name>{o}</name><difficult>{int(o == 'horse')}</difficult></object>"
                       for o in objects)
        (voc / "Annotations" / f"{name}.xml").write_text(f"<annotation>{body}</annotation>")
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("a1\na2\na3\na4\na5\na6\n")
    labels = ["dog", "person", "horse", "cat"]
    classes = write_classfile(tmp_path / "c.txt", labels)
    out = tmp_path / "pairs.json"
    assert run_main(["cooccurrence", tmp_path / "VOCdevkit", "--classfile", classes, "--output", out]) == 0
    err = capsys.readouterr().err
    weights = json.loads(out.read_text())
    sets = [set(images[i]) & set(labels) for i in ("a1", "a2", "a3", "a4", "a5", "a6")]
    n = {x: sum(x in s for s in sets) for x in labels}
    for a in labels:
        for b in labels:
            if a != b:
                both = sum(a in s and b in s for s in sets)
                assert weights[a][b] == (pytest.approx(both * 6 / (n[a] * n[b]), abs=1e-4) if both else 0)
    assert weights["dog"]["person"] == pytest.approx(2 * 6 / (3 * 3), abs=1e-4)
    assert "6 images, 3 with two or more classes; 2 of 6 pairs share an image" in err
    assert "'cat' shares no image with another class" in err
    base = ["--num", 4, "--classfile", classes, "--outputdir", tmp_path / "o", "--objects-per-image", 2,
            "--cooccurrence", out, "--dry-run"]
    assert run_main(base) == 2  # cat has no partner left
    assert "forbids every partner of 'cat'" in capsys.readouterr().err
    assert run_main(["cooccurrence", voc, "--classfile", classes, "--unseen", 0.1, "--output", out]) == 0
    assert json.loads(out.read_text())["cat"]["dog"] == 0.1
    capsys.readouterr()
    assert run_main(base) == 0 and "weighted by --cooccurrence" in capsys.readouterr().out
    assert run_main(["cooccurrence", voc, "--classfile", classes, "--split", "all", "--output", out]) == 0
    assert json.loads(out.read_text())["cat"]["dog"] == pytest.approx(1 * 7 / (2 * 4), abs=1e-4)  # a7 counts now
    assert run_main(["cooccurrence", tmp_path, "--classfile", classes]) == 2
    assert "has no Annotations/ folder" in capsys.readouterr().err
