"""Boxes from an open-vocabulary detector (tiny random OWLv2), through every writer.

A random detector gives arbitrary boxes, so the oracle is this test's own call of the transformers
processor, model and post-processing plus torchvision NMS on the same images: the backend here makes
each image from its seed alone (`pattern_image`), so the test rebuilds the exact pre-JPEG pixels the
product's detector saw.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import load_voc, read_jsonl, report_rows, run_cli, run_main, ultralytics_labels, write_classfile

LABELS = ["dog", "cat"]
THRESHOLD = 0.5


@pytest.fixture(scope="module")
def boxed(pattern, tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("boxes")
    classes = write_classfile(d / "c.txt", LABELS)
    out = d / "out"
    assert run_main(["--num", 6, "--classfile", classes, "--outputdir", out, "--backend", "pattern_backend:Pattern",
                     "--detector", tiny["owlv2"], "--box-threshold", THRESHOLD, "--batch-size", 3,
                     "--no-report", "--quiet"]) == 0
    return out


def oracle_boxes(model_dir, image, queries, iou=0.5):
    """transformers' own processor + model + post-processing, torchvision's NMS, on one image."""
    import torch
    from torchvision.ops import batched_nms
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        outputs = model(**processor(text=[queries], images=[image], return_tensors="pt"))
    side = max(image.size)  # OWLv2 pads to a square at the bottom/right: boxes are relative to it
    (res,) = processor.post_process_grounded_object_detection(outputs, threshold=THRESHOLD,
                                                               target_sizes=[(side, side)])
    keep = batched_nms(res["boxes"], res["scores"], res["labels"], iou)
    w, h = image.size
    found = []
    for i in keep.tolist():
        x1, y1, x2, y2 = res["boxes"][i].tolist()
        box = [min(max(x1, 0), w), min(max(y1, 0), h), min(max(x2, 0), w), min(max(y2, 0), h)]
        if box[2] > box[0] and box[3] > box[1]:
            found.append((LABELS[int(res["labels"][i])], float(res["scores"][i]), box))
    return found


def test_boxes_are_the_detectors_own_and_decide_what_is_kept(boxed, pattern, tiny):
    """Catches wrong coordinates (padding, scaling, clipping), a missing NMS, boxes of the wrong class,
    and a keep rule that ignores the boxes."""
    ledger = read_jsonl(boxed / ".state" / "ledger.jsonl")
    queries = [f"a photo of a {label}" for label in LABELS]
    statuses = set()
    for rec in ledger:
        want = oracle_boxes(tiny["owlv2"], pattern.pattern_image(rec["seed"]), queries)
        got = rec["boxes"]
        assert [b["label"] for b in got] == [label for label, _, _ in want], rec["k"]
        for b, (_, score, box) in zip(got, want):
            assert b["score"] == pytest.approx(score, abs=1e-4)
            assert b["box"] == pytest.approx(box, abs=0.02)
        own = any(label == rec["class"] for label, _, _ in want)
        assert rec["status"] == ("kept" if own else "rejected")
        assert rec.get("reason") == (None if own else "no box")
        statuses.add(rec["status"])
    assert statuses == {"kept", "rejected"}  # the planted threshold really splits them
    run = json.loads((boxed / "run.json").read_text())
    assert run["models"]["detector"]["box_threshold"] == THRESHOLD
    assert run["models"]["detector"]["queries_encoded_once"] is True  # the oracle above re-encodes per image
    no_box = {r["class"]: r["no_box"] for r in run["per_class"]}
    assert no_box == {label: sum(r["class"] == label and r["status"] == "rejected" for r in ledger)
                      for label in LABELS}


def test_voc_coco_and_yolo_carry_the_boxes(boxed, tmp_path):
    from pycocotools.coco import COCO

    meta = {m["id"]: m for m in read_jsonl(boxed / "metadata.jsonl")}
    assert all(m["boxes"] == [b for b in m["detections"] if b["label"] == m["class"]] for m in meta.values())
    # VOC, read by torchvision: one object per own-class box, 1-based inclusive corners around the box
    voc = load_voc(boxed)
    for (img, target), img_id in zip(voc, sorted(meta)):
        objects = target["annotation"]["object"]
        boxes = meta[img_id]["boxes"]
        assert [o["name"] for o in objects] == [b["label"] for b in boxes] and boxes
        for o, b in zip(objects, boxes):
            x1, y1, x2, y2 = b["box"]
            bb = {k: int(v) for k, v in o["bndbox"].items()}
            assert bb["xmin"] - 1 <= x1 < bb["xmin"] and bb["ymin"] - 1 <= y1 < bb["ymin"]
            assert abs(bb["xmax"] - x2) <= 0.5 and abs(bb["ymax"] - y2) <= 0.5
    # COCO, read by pycocotools: [x, y, w, h] and the detector's score
    assert run_main(["export", boxed, "--format", "coco"]) == 0
    coco = COCO(str(boxed / "exports" / "coco_trainval.json"))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    for img_id, m in meta.items():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[int(img_id)]))
        assert [names[a["category_id"]] for a in anns] == [b["label"] for b in m["boxes"]]
        for a, b in zip(anns, m["boxes"]):
            x1, y1, x2, y2 = b["box"]
            assert a["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.01) and a["score"] == b["score"]
    # YOLO, read by ultralytics' own YOLODataset: class ids, normalised centre boxes, the images' splits
    res = run_cli(["export", boxed, "--format", "yolo"])
    assert res.returncode == 0 and "whole-image" not in res.stderr, res.stderr
    read = ultralytics_labels(boxed / "exports" / "yolo" / "data.yaml", tmp_path)
    assert read["names"] == {str(i): label for i, label in enumerate(LABELS)}
    for split in ("train", "val"):
        ids = (boxed / "VOC2007" / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        assert sorted(read[split]) == ids
        for img_id in ids:
            m, got = meta[img_id], read[split][img_id]
            assert got["shape"] == [m["height"], m["width"]]
            assert [LABELS[c] for c in got["cls"]] == [b["label"] for b in m["boxes"]]
            for (cx, cy, w, h), b in zip(got["xywhn"], m["boxes"]):
                corners = [(cx - w / 2) * m["width"], (cy - h / 2) * m["height"], (cx + w / 2) * m["width"],
                           (cy + h / 2) * m["height"]]
                assert corners == pytest.approx(b["box"], abs=1e-3)
    for fmt in ("voc", "coco", "yolo"):
        assert run_cli(["check", boxed, "--format", fmt]).returncode == 0, fmt


def test_planted_boxes_decide_the_kept_set_and_other_classes_are_labels_only_on_request(pattern, tiny, tmp_path,
                                                                                        monkeypatch):
    from imaginarynet.detectors.zero_shot import OwlDetector

    def planted(self, candidates):
        """dog attempts with even k get a dog box; every image gets a cat box at a fixed place."""
        out = []
        for c in candidates:
            boxes = [{"label": "cat", "score": 0.9, "box": [0, 0, 10, 20], "query": "a photo of a cat"}]
            if c.label == "dog" and c.k % 2 == 0:
                boxes.insert(0, {"label": "dog", "score": 0.8, "box": [5, 6, 40, 50], "query": "a photo of a dog"})
            out.append(boxes)
        return out

    monkeypatch.setattr(OwlDetector, "detect", planted)
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    base = ["--per-class", 2, "--classfile", classes, "--backend", "pattern_backend:Pattern", "--detector",
            tiny["owlv2"], "--batch-size", 2, "--no-report", "--quiet"]
    for other in (False, True):
        out = tmp_path / f"other-{other}"
        assert run_main(base + ["--outputdir", out] + ["--label-other-detections"] * other) == 0
        meta = read_jsonl(out / "metadata.jsonl")
        assert [(m["class"], m["attempt"]) for m in meta] == [("dog", 0), ("dog", 2), ("cat", 0), ("cat", 1)]
        for (img, target), m in zip(load_voc(out), meta):
            names = [o["name"] for o in target["annotation"]["object"]]
            want = {"dog": ["dog", "cat"] if other else ["dog"], "cat": ["cat"]}[m["class"]]
            assert names == want
            assert [b["label"] for b in m["detections"]] == (["dog", "cat"] if m["class"] == "dog" else ["cat"])
        main = out / "VOC2007" / "ImageSets" / "Main"
        cat_rows = dict(line.split() for line in (main / "cat_trainval.txt").read_text().splitlines())
        assert cat_rows["000001"] == ("1" if other else "-1")  # a dog image carries the cat label only on request


def test_yolo_without_a_detector_says_the_boxes_are_whole_images(tiny_sd_args, tmp_path):
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    out = tmp_path / "out"
    assert run_main(["--num", 4, "--classfile", classes, "--outputdir", out, "--no-report", *tiny_sd_args]) == 0
    res = run_cli(["export", out, "--format", "yolo"])
    assert res.returncode == 0 and "whole-image box" in res.stderr
    lines = [p.read_text() for p in (out / "exports" / "yolo" / "labels").rglob("*.txt")]
    assert sorted(lines) == ["0 0.5 0.5 1 1\n"] * 2 + ["1 0.5 0.5 1 1\n"] * 2
    assert run_cli(["check", out, "--format", "yolo"]).returncode == 0


@pytest.mark.parametrize("args, message", [
    (["--box-threshold", "1.5"], "--box-threshold must be within [0, 1]"),
    (["--nms-iou", "0"], "--nms-iou must be within (0, 1]"),
    ("gpt2-as-detector", "is not a zero-shot object detector"),
    (["--detector", "omlab/omdet-turbo-swin-tiny-hf"], "omdet-turbo models are not supported yet"),
])
def test_bad_detector_options_are_one_line_exit_2(args, message, tiny, tmp_path, capsys):
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    if args == "gpt2-as-detector":
        args = ["--detector", tiny["gpt2"]]
    else:
        args = (["--detector", tiny["owlv2"]] if "--detector" not in args else []) + args
    code = run_main(["--num", 2, "--classfile", classes, "--outputdir", tmp_path / "out", "--sd-model", tiny["sd"],
                     *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out" / "run.json").exists()


def test_the_pattern_backend_really_varies(pattern):
    """Guard for the oracle above: different seeds, different images."""
    a, b = (np.asarray(pattern.pattern_image(s)) for s in (1, 2))
    assert a.shape == (64, 64, 3) and not (a == b).all()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Existing images of every kind annotate must read: modes, sizes, EXIF orientation, a broken file."""
    from PIL import Image

    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (48, 80, 4), dtype=np.uint8), "RGBA").save(d / "a_wide.png")
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), "L").save(d / "b_gray.webp")
    rotated = Image.fromarray(rng.integers(0, 256, (40, 72, 3), dtype=np.uint8))
    exif = rotated.getexif()
    exif[0x0112] = 6  # shown rotated 90° clockwise: the image a viewer shows is 40 wide, 72 high
    rotated.save(d / "c_rotated.jpg", exif=exif)
    (d / "d_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (d / "notes.txt").write_text("not an image")
    return d


def test_annotate_detects_in_existing_images(photos, tiny, tmp_path):
    """Catches ignored EXIF orientation, wrong coordinates on non-square images, ids out of file-name
    order, a crash on a broken file, and a class that is not the best box's."""
    from PIL import Image, ImageOps

    classes = write_classfile(tmp_path / "c.txt", LABELS)
    out = tmp_path / "annotated"
    args = ["annotate", photos, "--classfile", classes, "--outputdir", out, "--detector", tiny["owlv2"],
            "--box-threshold", THRESHOLD, "--batch-size", 2, "--no-report"]
    res = run_cli(args)
    assert res.returncode == 0, res.stderr
    assert f"{photos / 'd_broken.jpg'} could not be read; skipped" in res.stderr
    queries = [f"a photo of a {label}" for label in LABELS]
    expected = []
    for name in ("a_wide.png", "b_gray.webp", "c_rotated.jpg"):
        with Image.open(photos / name) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode == "RGBA":
                im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
            im = im.convert("RGB")
        boxes = oracle_boxes(tiny["owlv2"], im, queries)
        if boxes:  # the class is the best box's; the image is kept with that class's boxes
            label = boxes[0][0]
            expected.append((name, label, im.size, [b for b in boxes if b[0] == label]))
    meta = read_jsonl(out / "metadata.jsonl")
    assert [m["source"] for m in meta] == [name for name, *_ in expected]
    assert [m["id"] for m in meta] == [f"{i:06d}" for i in range(1, len(expected) + 1)]
    for m, (name, label, size, boxes) in zip(meta, expected):
        assert m["class"] == label and (m["width"], m["height"]) == size
        assert [b["box"] for b in m["boxes"]] == [pytest.approx(box, abs=0.02) for _, _, box in boxes]
    rotated = [m for m in meta if m["source"] == "c_rotated.jpg"]
    assert not rotated or (rotated[0]["width"], rotated[0]["height"]) == (40, 72)
    assert run_cli(["check", out]).returncode == 0
    again = run_cli(args)
    assert again.returncode == 0 and "already complete" in again.stderr


def test_annotate_as_the_readme_types_it_writes_the_dataset_and_its_report(photos, tiny, tmp_path):
    """`imaginarynet annotate DIR --classfile F --outputdir OUT --detector ID` with every default. It crashed in
    the report on every such run (annotated images have no prompt) while its only test passed --no-report."""
    import re

    classes = write_classfile(tmp_path / "c.txt", LABELS)
    out = tmp_path / "out"
    res = run_cli(["annotate", photos, "--classfile", classes, "--outputdir", out, "--detector", tiny["owlv2"]])
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    meta = read_jsonl(out / "metadata.jsonl")
    assert meta and res.stderr.strip().splitlines()[-1] == f"{len(meta)}/4 images kept in {out / 'VOC2007'}"
    page = (out / "report" / "index.html").read_text()
    assert sorted(re.findall(r"<span class='prompt'>([^<]*)</span>", page)) == sorted(m["source"] for m in meta)
    kept = {label: cells[2] for label, cells in report_rows(page, "data-class").items()}
    assert kept == {label: str(sum(m["class"] == label for m in meta)) for label in LABELS}
    assert all((out / "report" / "thumbs" / f"{m['id']}.jpg").exists() for m in meta)


@pytest.mark.parametrize("case, message", [
    ("missing", "is not a folder"), ("empty", "holds no JPEG, PNG or WebP image"),
    ("no stage", "annotate needs --detector or --clip"),
])
def test_annotate_bad_input_is_one_line_exit_2(case, message, tiny, tmp_path):
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    source = tmp_path / "src"
    if case != "missing":
        source.mkdir()
    if case == "no stage":
        (source / "x.png").write_bytes(b"")
    stage = [] if case == "no stage" else ["--detector", tiny["owlv2"]]
    res = run_cli(["annotate", source, "--classfile", classes, "--outputdir", tmp_path / "out", *stage])
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and message in res.stderr, res.stderr


def test_report_draws_boxes_and_tables_them(boxed, tmp_path):
    import shutil

    from PIL import Image

    from imaginarynet.report import _thumb

    out = tmp_path / "out"
    shutil.copytree(boxed, out)
    assert run_cli(["report", out]).returncode == 0
    rows = report_rows((out / "report" / "index.html").read_text(), "data-boxes")
    meta = read_jsonl(out / "metadata.jsonl")
    for label in LABELS:
        mine = [m for m in meta if m["class"] == label]
        scores = [b["score"] for m in mine for b in m["boxes"]]
        want = [label, str(len(mine)), str(round(len(scores) / len(mine), 2)) if mine else "None",
                str(round(sum(scores) / len(scores), 3)) if scores else "None"]
        assert rows[label] == want
    # the contact sheet's thumbnail has the boxes drawn: it differs from the same thumbnail without them
    m = meta[0]
    plain = tmp_path / "plain.jpg"
    assert _thumb(out / m["file_name"], plain)
    drawn = np.asarray(Image.open(out / "report" / "thumbs" / f"{m['id']}.jpg"), float)
    assert np.abs(drawn - np.asarray(Image.open(plain), float)).max() > 100


# ------------------------------------------------------------------------------- Grounding DINO

GD_CLASSES = ["dog", "diningtable: dining table", "cat"]
GD_LABELS = ["dog", "diningtable", "cat"]
GD_TEXT = "dog . dining table . cat ."


@pytest.fixture(scope="module")
def tiny_gdino(tmp_path_factory):
    from tiny_models import build_tiny_grounding_dino

    return build_tiny_grounding_dino(tmp_path_factory.mktemp("gdino") / "model")


def spans_from_offsets(tokenizer, text: str, names: list[str]) -> list[list[int]]:
    """Each class's tokens, found by character offsets of its name in the text (not by separators)."""
    enc = tokenizer(text, return_offsets_mapping=True)
    spans, pos = [], 0
    for name in names:
        start = text.index(name, pos)
        end = pos = start + len(name)
        spans.append([i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a >= start and b <= end])
    return spans


def test_grounding_dino_class_is_the_span_of_the_best_token(tiny_gdino):
    """Planted per-token scores: the best token is the second word of "dining table"; a class found by
    matching the decoded phrase ("table") to the class names would miss it."""
    import torch
    from transformers import AutoProcessor

    from imaginarynet.detectors.grounding import class_of_box, class_spans

    tok = AutoProcessor.from_pretrained(tiny_gdino).tokenizer
    ids = tok(GD_TEXT)["input_ids"]
    spans = class_spans(ids, tok.convert_tokens_to_ids("."), set(tok.all_special_ids))
    want = spans_from_offsets(tok, GD_TEXT, ["dog", "dining table", "cat"])
    assert [list(range(a, b)) for a, b in spans] == want and len(want[1]) == 2
    scores = torch.zeros(len(ids))
    scores[want[1][1]] = 0.9  # "table"
    scores[want[0][0]] = 0.6  # "dog", lower
    scores[ids.index(tok.cls_token_id)] = 0.99  # a special token never decides the class
    assert class_of_box(scores, spans) == (1, pytest.approx(0.9))


def test_grounding_dino_boxes_through_the_cli(pattern, tiny_gdino, tmp_path):
    import torch
    from torchvision.ops import batched_nms
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    classes = write_classfile(tmp_path / "c.txt", GD_CLASSES)
    out = tmp_path / "out"
    assert run_main(["--num", 6, "--classfile", classes, "--outputdir", out, "--backend", "pattern_backend:Pattern",
                     "--detector", tiny_gdino, "--box-threshold", 0.9, "--batch-size", 3, "--no-report",
                     "--quiet"]) == 0
    processor = AutoProcessor.from_pretrained(tiny_gdino)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(tiny_gdino).eval()
    spans = spans_from_offsets(processor.tokenizer, GD_TEXT, ["dog", "dining table", "cat"])
    statuses = set()
    for rec in read_jsonl(out / ".state" / "ledger.jsonl"):
        image = pattern.pattern_image(rec["seed"])
        inputs = processor(images=[image], text=[GD_TEXT], return_tensors="pt")
        with torch.inference_mode():
            outputs = model(**inputs)
        (res,) = processor.post_process_grounded_object_detection(outputs, input_ids=inputs["input_ids"],
                                                                   threshold=0.9, target_sizes=[(64, 64)])
        probs = outputs.logits.sigmoid()[0]
        picked = (probs.max(-1).values > 0.9).nonzero().flatten().tolist()
        classes_ = torch.tensor([max(range(3), key=lambda c: float(probs[q, spans[c]].max())) for q in picked])
        keep = batched_nms(res["boxes"], res["scores"], classes_, 0.5).tolist() if picked else []
        want = [(GD_LABELS[int(classes_[i])], float(res["scores"][i]), res["boxes"][i].clamp(0, 64).tolist())
                for i in keep]
        got = rec["boxes"]
        assert [b["label"] for b in got] == [w[0] for w in want]
        for b, (_, score, box) in zip(got, want):
            assert b["score"] == pytest.approx(score, abs=1e-4) and b["box"] == pytest.approx(box, abs=0.02)
        assert rec["status"] == ("kept" if any(w[0] == rec["class"] for w in want) else "rejected")
        statuses.add(rec["status"])
    assert statuses == {"kept", "rejected"}
    assert run_cli(["check", out]).returncode == 0


def test_annotate_runs_through_the_pipeline_with_workers_shards_and_the_event_log(tiny, tmp_path):
    """annotate is pipeline.run with the folder source: one plain run, `--workers 2` with --log-json, and two
    `--shard` slices write the same dataset. Catches a folder source scheduled by the class each image turns out
    to be (a worker would then see the other classes' images as missing and look at them again, or never),
    a shard that loses or repeats images, and an annotate without the event log."""
    from PIL import Image

    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(11)
    for i in range(10):
        h, w = 40 + 4 * i, 72 - 3 * i
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.jpg")
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    base = ["annotate", folder, "--classfile", classes, "--detector", tiny["owlv2"], "--box-threshold", THRESHOLD,
            "--no-report", "--quiet"]
    log = tmp_path / "events.jsonl"
    runs = {"plain": ["--batch-size", 3], "workers": ["--workers", 2, "--batch-size", 2, "--log-json", log],
            "shards": ["--shard", "0/2"]}
    for name, extra in runs.items():
        res = run_cli(base + ["--outputdir", tmp_path / name, *extra])
        assert res.returncode == 0, res.stderr
    assert not (tmp_path / "shards" / "metadata.jsonl").exists()  # one slice of two: not assembled yet
    res = run_cli(base + ["--outputdir", tmp_path / "shards", "--shard", "1/2"])
    assert res.returncode == 0, res.stderr

    def dataset(name):
        rows = read_jsonl(tmp_path / name / "metadata.jsonl")
        return [(r["id"], r["source"], r["class"], [(b["label"], b["box"]) for b in r["boxes"]]) for r in rows]

    plain = dataset("plain")
    assert len(plain) >= 2, "the tiny detector must keep some of these images for this test to mean anything"
    for name in ("workers", "shards"):
        got = dataset(name)
        assert [g[:3] for g in got] == [p[:3] for p in plain]
        for g, p in zip(got, plain):
            assert [lab for lab, _ in g[3]] == [lab for lab, _ in p[3]]
            assert [box for _, box in g[3]] == [pytest.approx(box, abs=0.02) for _, box in p[3]]
        assert run_cli(["check", tmp_path / name]).returncode == 0
    events = read_jsonl(log)
    batches = [e for e in events if e["event"] == "batch"]
    assert sum(e["attempts"] for e in batches) == 10 and len(batches) == 5
    assert events[-1]["event"] == "end" and events[-1]["kept"] == len(plain)
    run = json.loads((tmp_path / "workers" / "run.json").read_text())
    assert run["status"] == "complete" and run["counts"] == {"kept": len(plain), "target": 10, "attempts": 10}
    assert len(run["models"]["workers"]["attempts_per_worker"]) == 2
