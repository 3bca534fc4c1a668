"""--segmenter end to end: masks in the ledger and metadata.jsonl, then read back by the libraries users train
with (pycocotools, torchvision's VOCSegmentation, ultralytics' YOLODataset with task="segment", datasets'
imagefolder), against masks the test computes itself with transformers and against planted ones."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import kill_midway, read_jsonl, report_rows, run_cli, ultralytics_labels, write_classfile
from PIL import Image
from test_masks_segmenter import oracle, same_mask

from imaginarynet import masks

LABELS = ["dog", "cat"]
THRESHOLD = 0.5  # the tiny OWLv2's scores: some boxes clear it, not all


def test_every_written_mask_is_the_models_mask_clipped_to_its_detector_box(annotated, tiny):
    """Catches a mask of another box or image (batching), one not brought back to the image size, a box that is
    not its mask's box, a mask not clipped to the detector box, and the wrong multimask output."""
    _, photos, out, rows = annotated
    for row in rows:
        image = Image.open(photos / row["source"]).convert("RGB")
        for b in row["boxes"]:
            expected, iou, logits = oracle(tiny["sam"], "sam", image, b["detector_box"])
            x1, y1, x2, y2 = b["detector_box"]
            outside = np.ones_like(expected)
            outside[int(np.floor(y1)):int(np.ceil(y2)), int(np.floor(x1)):int(np.ceil(x2))] = False
            expected = expected & ~outside
            got = masks.decode(b["mask"])
            same_mask(got, expected, np.where(outside, 1.0, logits))
            assert b["mask_iou"] == pytest.approx(iou, rel=1e-4, abs=1e-5)
            ys, xs = np.nonzero(got)
            assert b["box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert b["mask_fill"] == pytest.approx(got.sum() / ((x2 - x1) * (y2 - y1)), abs=1e-5)
    assert run_cli(["check", out]).returncode == 0


def test_coco_export_reads_back_in_pycocotools_as_rle_and_as_polygons(annotated):
    from pycocotools.coco import COCO

    _, _, out, rows = annotated
    boxes = [b for r in rows for b in r["boxes"]]
    for polygons in (False, True):
        res = run_cli(["export", out, "--format", "coco"] + (["--polygons"] if polygons else []))
        assert res.returncode == 0, res.stderr
        coco = COCO(str(out / "exports" / "coco_trainval.json"))
        anns = coco.dataset["annotations"]
        assert len(anns) == len(boxes)
        for ann, b in zip(anns, boxes):
            want = masks.decode(b["mask"])
            got = coco.annToMask(ann).astype(bool)
            x, y, w, h = ann["bbox"]
            assert [x, y, x + w, y + h] == b["box"]
            if polygons:
                assert all(len(p) >= 6 and len(p) % 2 == 0 for p in ann["segmentation"])
                # every vertex is the centre of a mask pixel (an outline traced through pixel centres): a
                # swapped, shifted or scaled outline fails. (How much of a ragged mask the outline's raster
                # covers depends on its holes, which COCO polygons cannot carry: checked on blobs in
                # test_masks_segmenter.)
                for p in ann["segmentation"]:
                    for vx, vy in zip(p[0::2], p[1::2]):
                        assert want[int(vy - 0.5), int(vx - 0.5)] and vx % 1 == vy % 1 == 0.5
                assert got.any() and ann["area"] == want.sum()
            else:
                assert np.array_equal(got, want) and ann["area"] == want.sum()
    assert run_cli(["check", out, "--format", "coco"]).returncode == 0


def test_voc_segmentation_pngs_load_in_torchvision_and_follow_the_objects(annotated):
    """The class PNG computed here from metadata.jsonl (higher detector score on top) equals what torchvision's
    VOCSegmentation reads; object values are XML object indices. Catches a palette PNG of the wrong mode,
    values that are not class indices, overlaps decided the wrong way, missing split files."""
    from torchvision.datasets import VOCSegmentation

    from imaginarynet.writers.voc import read_annotation

    d, _, out, rows = annotated
    root = d / "tv"
    root.mkdir(exist_ok=True)
    if not (root / "VOCdevkit").exists():
        (root / "VOCdevkit").symlink_to(out.resolve())
    ds = VOCSegmentation(str(root), year="2007", image_set="trainval")
    assert len(ds) == len(rows)
    for (image, target), row in zip(ds, rows):
        assert target.size == image.size == (row["width"], row["height"])
        want_cls = np.zeros((row["height"], row["width"]), np.uint8)
        want_obj = np.zeros_like(want_cls)
        order = sorted(range(len(row["boxes"])), key=lambda j: (row["boxes"][j]["score"], -j))
        for j in order:
            m = masks.decode(row["boxes"][j]["mask"])
            want_cls[m] = LABELS.index(row["boxes"][j]["label"]) + 1
            want_obj[m] = j + 1
        assert np.array_equal(np.array(target), want_cls)
        assert np.array_equal(np.array(Image.open(out / "VOC2007" / "SegmentationObject" / f"{row['id']}.png")),
                              want_obj)
        ann = read_annotation(out / "VOC2007" / "Annotations" / f"{row['id']}.xml")
        assert [o.name for o in ann.objects] == [b["label"] for b in row["boxes"]]
    xml = (out / "VOC2007" / "Annotations" / f"{rows[0]['id']}.xml").read_text()
    assert "<segmented>1</segmented>" in xml
    for split in ("train", "val", "trainval"):
        seg = (out / "VOC2007" / "ImageSets" / "Segmentation" / f"{split}.txt").read_text()
        assert seg == (out / "VOC2007" / "ImageSets" / "Main" / f"{split}.txt").read_text()


def test_check_finds_a_class_png_that_disagrees_with_its_objects(annotated, tmp_path):
    import shutil

    _, _, out, rows = annotated
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, symlinks=True)
    png = copy / "VOC2007" / "SegmentationClass" / f"{rows[0]['id']}.png"
    im = Image.open(png)
    values = np.array(im)
    values[values == values.max()] = 0  # an object's pixels lose their class
    broken = Image.fromarray(values, mode="P")
    broken.putpalette(im.getpalette())
    broken.save(png)
    res = run_cli(["check", copy])
    assert res.returncode == 1 and "SegmentationClass" in res.stdout


def test_yolo_seg_export_reads_back_in_ultralytics(annotated, tmp_path):
    """ultralytics' segment task gets one polygon per instance, whose filled area is the mask's."""
    import cv2

    _, _, out, rows = annotated
    res = run_cli(["export", out, "--format", "yolo-seg"])
    assert res.returncode == 0, res.stderr
    assert run_cli(["check", out, "--format", "yolo-seg"]).returncode == 0
    labels = ultralytics_labels(out / "exports" / "yolo-seg" / "data.yaml", tmp_path, task="segment")
    read = {**labels["train"], **labels["val"]}
    assert len(read) == len(rows)
    for row in rows:
        got = read[row["id"]]
        assert got["cls"] == [LABELS.index(b["label"]) for b in row["boxes"]]
        assert len(got["segments"]) == len(row["boxes"])
        for poly, b in zip(got["segments"], row["boxes"]):
            want = masks.decode(b["mask"])
            drawn = np.zeros(want.shape, np.uint8)
            points = np.round(np.array(poly) * [row["width"], row["height"]]).astype(np.int32)
            cv2.fillPoly(drawn, [points], 1)
            inter, union = (drawn.astype(bool) & want).sum(), (drawn.astype(bool) | want).sum()
            assert inter / union > 0.6  # a traced outline of a small mask: the boundary pixels differ


def test_imagefolder_objects_column_reads_back_in_datasets(annotated):
    import datasets

    _, _, out, rows = annotated
    res = run_cli(["export", out, "--format", "imagefolder"])
    assert res.returncode == 0, res.stderr
    ds = datasets.load_dataset("imagefolder", data_dir=str(out / "exports" / "imagefolder" / "trainval"),
                               split="train")
    assert len(ds) == len(rows)
    for item, row in zip(ds, rows):
        objects = item["objects"]
        assert objects["category"] == [LABELS.index(b["label"]) for b in row["boxes"]]
        assert objects["bbox"] == [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in (b["box"] for b in row["boxes"])]
        assert objects["segmentation"] == [b["mask"] for b in row["boxes"]]
        assert objects["area"] == [masks.area(b["mask"]) for b in row["boxes"]]


def test_the_report_and_run_json_count_masks(annotated):
    """run.json names the segmenter and counts "no mask" per class; the report's Masks table counts the masks
    of each class and their mean fill, computed here from metadata.jsonl."""
    _, _, out, rows = annotated
    run = json.loads((out / "run.json").read_text())
    assert run["models"]["segmenter"]["segmenter"] == "sam"
    assert all(row["no_mask"] == 0 for row in run["per_class"])
    table = report_rows((out / "report" / "index.html").read_text(), "data-masks")
    for label in LABELS:
        mine = [b for r in rows for b in r["boxes"] if b["label"] == label]
        assert table[label][1] == str(len(mine))
        if mine:
            assert float(table[label][2]) == pytest.approx(sum(b["mask_fill"] for b in mine) / len(mine), abs=1e-3)
        assert table[label][4] == "0"


def test_quality_rules_drop_a_box_and_reject_an_image_without_masks():
    """Planted segmenter outputs: a low predicted IoU and a thin mask are dropped with their reasons, a mask
    spilling out of its box is clipped to the box rounded outward, and every_class_masked says which images
    keep a mask of every prompted class."""
    from imaginarynet.segmenters import attach_masks, every_class_masked

    h, w = 30, 40
    full = np.ones((h, w), bool)
    thin = np.zeros((h, w), bool)
    thin[10, 10:12] = True
    boxes = [{"label": "dog", "box": [4.5, 5.2, 20.7, 18.1], "score": 0.9},
             {"label": "dog", "box": [0, 0, 10, 10], "score": 0.8},
             {"label": "cat", "box": [5, 5, 25, 25], "score": 0.7}]
    found = [{"mask": full, "iou": 0.9}, {"mask": full, "iou": 0.5}, {"mask": thin, "iou": 0.95}]
    out = attach_masks(boxes, found, min_iou=0.7, min_fill=0.1)
    assert out[0]["box"] == [4, 5, 21, 19] and out[0]["detector_box"] == boxes[0]["box"]
    assert masks.decode(out[0]["mask"]).sum() == (21 - 4) * (19 - 5)
    assert out[1]["mask_rejected"].startswith("mask iou 0.5") and "mask" not in out[1]
    assert out[2]["mask_rejected"].startswith("mask fill") and out[2]["box"] == boxes[2]["box"]
    assert every_class_masked(out, ["dog"]) and not every_class_masked(out, ["dog", "cat"])


def test_masks_do_not_depend_on_batch_size_workers_or_a_kill(tiny, tiny_sd_args, tmp_path):
    """generate with --segmenter: batch size 1, 3, two workers, and a run killed with SIGKILL after its first
    batches then run again, write the same labels and masks. The batch-size-3 run has no shortcut (progress,
    summary and report as a user gets them): its summary has the "no mask" column and its report the Masks
    table."""
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    base = ["--num", 6, "--classfile", classes, *tiny_sd_args, "--detector", tiny["owlv2"], "--box-threshold",
            0.3, "--segmenter", tiny["sam"], "--mask-iou", 0, "--mask-min-fill", 0, "--max-attempts", 12]
    quick = ["--quiet", "--no-report"]
    found, said = {}, {}
    for name, extra in (("b1", ["--batch-size", 1, *quick]), ("b3", ["--batch-size", 3]),
                        ("w2", ["--batch-size", 2, "--workers", 2, *quick])):
        res = run_cli(base + ["--outputdir", tmp_path / name, *extra])
        assert res.returncode == 0, res.stderr
        said[name] = res.stderr
        rows = read_jsonl(tmp_path / name / "metadata.jsonl")
        found[name] = [(r["id"], r["attempt"], [(b["label"], b["box"], b["mask"]) for b in r["boxes"]]) for r in rows]
    assert "no mask" in said["b3"] and f"6/6 images in {tmp_path / 'b3' / 'VOC2007'}" in said["b3"]
    table = report_rows((tmp_path / "b3" / "report" / "index.html").read_text(), "data-masks")
    for label in LABELS:
        assert table[label][1] == str(sum(b[0] == label for _, _, boxes in found["b3"] for b in boxes))
    killed = tmp_path / "killed"
    kill_midway(base + ["--outputdir", killed, "--batch-size", 1, *quick], killed, 3)
    assert not (killed / "metadata.jsonl").exists()
    res = run_cli(base + ["--outputdir", killed, "--batch-size", 1, *quick])
    assert res.returncode == 0, res.stderr
    rows = read_jsonl(killed / "metadata.jsonl")
    found["killed"] = [(r["id"], r["attempt"], [(b["label"], b["box"], b["mask"]) for b in r["boxes"]]) for r in rows]
    assert found["b1"] and any(boxes for _, _, boxes in found["b1"])
    assert found["b1"] == found["b3"] == found["w2"] == found["killed"]


@pytest.mark.parametrize("extra, message", [
    ([], "--segmenter needs --detector"),
    (["--mask-iou", 1.5], "--mask-iou must be within [0, 1]"),
    (["--mask-min-fill", -0.1], "--mask-min-fill must be within [0, 1]"),
])
def test_segmenter_bad_input_is_one_line_exit_2(tiny, tmp_path, extra, message):
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    detector = ["--detector", tiny["owlv2"]] if extra else []
    res = run_cli(["--classfile", classes, "--outputdir", tmp_path / "out", "--segmenter", tiny["sam"], *detector,
                   *extra])
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and message in res.stderr, res.stderr


def test_a_model_that_is_not_sam_is_refused_before_anything_loads(tiny, tmp_path):
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    res = run_cli(["--classfile", classes, "--outputdir", tmp_path / "out", "--detector", tiny["owlv2"],
                   "--segmenter", tiny["owlv2"]])
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "SAM" in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()


def test_dry_run_and_download_name_the_segmenter(tiny, tiny_sd_args, tmp_path):
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    args = ["--classfile", classes, *tiny_sd_args, "--detector", tiny["owlv2"], "--segmenter", tiny["sam"]]
    res = run_cli(["generate", *args, "--dry-run"])
    assert res.returncode == 0 and f"segmenter     {tiny['sam']}  [local]" in res.stdout, res.stdout
    res = run_cli(["download", *args])
    assert res.returncode == 0 and f"segmenter: {tiny['sam']} is a local folder" in res.stdout, res.stdout


def test_where_masks_overlap_the_higher_detector_score_owns_the_pixel():
    """Planted masks: the VOC PNGs give a shared pixel to the higher score whatever the object order, and
    the object values are XML positions."""
    from imaginarynet.dataset import Entry
    from imaginarynet.writers.voc import segmentation_maps

    h, w = 10, 12
    a, b = np.zeros((h, w), bool), np.zeros((h, w), bool)
    a[2:6, 2:8] = True
    b[4:9, 5:11] = True
    boxes = ({"label": "cat", "box": masks.bbox(a), "score": 0.4, "mask": masks.encode(a)},
             {"label": "dog", "box": masks.bbox(b), "score": 0.9, "mask": masks.encode(b)})
    for order in (boxes, boxes[::-1]):
        e = Entry(id="000001", label=order[0]["label"], name="x", k=0, prompt="p", seed=0, width=w, height=h,
                  staged="x.jpg", score=None, boxes=order, detections=order)
        objects, classes = segmentation_maps(e, LABELS)
        dog = 1 + [o["label"] for o in order].index("dog")
        assert objects[5, 6] == dog and classes[5, 6] == LABELS.index("dog") + 1  # the shared pixel
        assert classes[2, 2] == LABELS.index("cat") + 1 and classes[8, 10] == LABELS.index("dog") + 1
        assert objects[0, 0] == classes[0, 0] == 0


def test_annotate_with_sam2_gives_sam2s_masks(tiny, tmp_path):
    """The SAM 2 family through the same stage: Sam2Processor's post-processing, no reshaped sizes."""
    from tiny_models import build_tiny_sam2

    sam2 = build_tiny_sam2(tmp_path / "sam2")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(9)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (50 + 7 * i, 70, 3), dtype=np.uint8)).save(photos / f"q{i}.png")
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    out = tmp_path / "out"
    res = run_cli(["annotate", photos, "--classfile", classes, "--outputdir", out, "--detector", tiny["owlv2"],
                   "--box-threshold", THRESHOLD, "--segmenter", sam2, "--mask-iou", 0, "--mask-min-fill", 0,
                   "--no-report"])
    assert res.returncode == 0, res.stderr
    rows = read_jsonl(out / "metadata.jsonl")
    assert rows and all(r["boxes"] for r in rows)
    for row in rows:
        image = Image.open(photos / row["source"]).convert("RGB")
        for b in row["boxes"]:
            expected, iou, logits = oracle(sam2, "sam2", image, b["detector_box"])
            x1, y1, x2, y2 = b["detector_box"]
            inside = np.zeros_like(expected)
            inside[int(np.floor(y1)):int(np.ceil(y2)), int(np.floor(x1)):int(np.ceil(x2))] = True
            same_mask(masks.decode(b["mask"]), expected & inside, np.where(inside, logits, 1.0))
            assert b["mask_iou"] == pytest.approx(iou, rel=1e-4, abs=1e-5)
    assert run_cli(["check", out]).returncode == 0


def test_boxes_whose_masks_fail_are_dropped_and_images_without_one_are_no_mask(annotated, tiny, tmp_path):
    """--mask-min-fill 1 (a mask must fill its whole detector box): the same photos as `annotated`, whose boxes
    all had masks, now come out "no mask" wherever no box keeps one; the summary, run.json and the ledger say
    so, and a failed box stays in detections with its reason, never in the labels."""
    d, photos, _, kept_before = annotated
    out = tmp_path / "strict"
    res = run_cli(["annotate", photos, "--classfile", d / "c.txt", "--outputdir", out, "--detector", tiny["owlv2"],
                   "--box-threshold", THRESHOLD, "--segmenter", tiny["sam"], "--mask-iou", 0, "--mask-min-fill", 1])
    assert res.returncode == 0, res.stderr
    assert "no mask" in res.stderr  # the summary table's column
    ledger = read_jsonl(out / ".state" / "ledger.jsonl")
    no_mask = [r for r in ledger if r.get("reason") == "no mask"]
    assert no_mask, "--mask-min-fill 1 should leave some image without a mask"
    for r in no_mask:
        assert all("mask_rejected" in b for b in r["boxes"] if b["label"] == r["class"])
    run = json.loads((out / "run.json").read_text())
    assert sum(row["no_mask"] for row in run["per_class"]) == len(no_mask)
    for row in read_jsonl(out / "metadata.jsonl"):
        assert all("mask" in b and "mask_rejected" not in b for b in row["boxes"])
        assert any("mask_rejected" in b for b in row["detections"]) or len(row["boxes"]) == len(row["detections"])
    assert len(read_jsonl(out / "metadata.jsonl")) == len(kept_before) - len(no_mask)
