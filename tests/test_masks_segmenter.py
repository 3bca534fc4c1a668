"""Instance masks: the RLE, box, quality and polygon helpers (imaginarynet/masks.py) against pycocotools,
ultralytics and oracles computed here, and the SAM-family segmenter on tiny random SAM, SAM-HQ and SAM 2
checkpoints against the test's own transformers loop (one image, one box at a time)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from imaginarynet import masks
from imaginarynet.errors import UserError
from imaginarynet.segmenters import create_segmenter, segmenter_family


def blobs(h, w, centres, radius):
    """Disks of `radius` around (x, y) centres."""
    yy, xx = np.mgrid[:h, :w]
    return np.any([(xx - x) ** 2 + (yy - y) ** 2 <= radius ** 2 for x, y in centres], axis=0)


# --- masks.py ---------------------------------------------------------------------------------------------

def test_rle_is_pycocotools_rle_and_round_trips():
    from pycocotools import mask as cocomask

    rng = np.random.default_rng(0)
    cases = [rng.random((37, 53)) < 0.3, blobs(40, 60, [(20, 15)], 9), np.zeros((5, 7), bool), np.ones((4, 3), bool)]
    for m in cases:
        rle = masks.encode(m)
        reference = cocomask.encode(np.asfortranarray(m.astype(np.uint8)))
        assert rle == {"size": list(m.shape), "counts": reference["counts"].decode()}
        assert json.loads(json.dumps(rle)) == rle
        assert np.array_equal(masks.decode(rle), m) and masks.decode(rle).dtype == bool
        assert np.array_equal(masks.decode(rle), cocomask.decode(reference).astype(bool))
        assert masks.area(rle) == m.sum()


def test_bbox_is_in_pixel_edges():
    m = np.zeros((30, 40), bool)
    m[7:12, 5:9] = True
    m[20, 33] = True
    assert masks.bbox(m) == [5, 7, 34, 21]
    assert masks.bbox(np.zeros((3, 3), bool)) is None


def test_clip_to_box_keeps_every_pixel_the_box_touches():
    rng = np.random.default_rng(1)
    m = rng.random((20, 30)) < 0.7
    rows, cols = np.mgrid[:20, :30]
    for box in ([3.2, 4.7, 17.5, 12.0], [0.0, 0.0, 30.0, 20.0], [-5.5, 2.5, 8.01, 40.0], [10.0, 5.0, 10.4, 5.9],
                [29.5, 19.5, 35.0, 25.0]):
        x1, y1, x2, y2 = box
        # a pixel is the square [c, c + 1) x [r, r + 1); it stays if that square overlaps the box
        inside = (cols + 1 > x1) & (cols < x2) & (rows + 1 > y1) & (rows < y2)
        assert np.array_equal(masks.clip_to_box(m, box), m & inside), box
    assert masks.clip_to_box(m, [31, 21, 40, 30]).sum() == 0


def test_judge_gives_the_reason():
    m = np.zeros((40, 40), bool)
    m[10:12, 10:12] = True  # 4 pixels in a 10 x 10 box: fill 0.04
    box = [5, 5, 15, 15]
    assert masks.judge(np.zeros_like(m), 0.99, box, 0.7, 0.1) == "empty mask"
    assert masks.judge(m, 0.52, box, 0.7, 0.0) == "mask iou 0.52 < 0.7"
    assert masks.judge(m, 0.6999, box, 0.7, 0.0) == "mask iou 0.6999 < 0.7"  # never reads as 0.7 < 0.7
    assert masks.judge(m, -0.01234, box, 0.7, 0.0) == "mask iou -0.012 < 0.7"  # SAM's IoU head is not clamped
    assert masks.judge(m, 0.9, box, 0.7, 0.1) == "mask fill 0.04 < 0.1"
    assert masks.judge(m, 0.7, box, 0.7, 0.04) is None  # thresholds are inclusive
    m[5:15, 5:15] = True
    assert masks.judge(m, 0.9, [5.5, 5.5, 14.5, 14.5], 0.7, 0.1) is None


def test_polygons_cover_the_mask_when_rasterised_again():
    from pycocotools import mask as cocomask

    h, w = 64, 80
    m = blobs(h, w, [(20, 20), (58, 40)], 12)
    m[2, 75] = True  # a single pixel: a contour of 1 point, not a polygon
    polys = masks.polygons(m)
    assert len(polys) == 2
    assert all(len(p) >= 6 and len(p) % 2 == 0 and all(isinstance(v, float) for v in p) for p in polys)
    back = cocomask.decode(cocomask.merge(cocomask.frPyObjects(polys, h, w))).astype(bool)
    m[2, 75] = False
    assert (back & m).sum() / (back | m).sum() > 0.9
    assert not (back & ~m).any()  # through the boundary pixels' centres: nothing outside the mask
    assert masks.polygons(np.zeros((5, 5), bool)) == []


def test_yolo_segment_joins_the_parts_into_one_polygon():
    m = np.zeros((40, 60), bool)
    m[5:15, 5:20] = True
    m[25:35, 40:55] = True
    poly = masks.yolo_segment(m)
    assert poly.ndim == 2 and poly.shape[1] == 2
    # every vertex is a mask pixel (cv2's contours run through the boundary pixels), and both parts are on it
    xs, ys = poly[:, 0].astype(int), poly[:, 1].astype(int)
    assert np.array_equal(xs, poly[:, 0]) and m[ys, xs].all()
    assert (ys < 20).any() and (ys >= 25).any()
    assert masks.yolo_segment(np.zeros((4, 4), bool)).shape == (0, 2)
    single = blobs(30, 30, [(15, 15)], 8)
    assert np.array_equal(masks.yolo_segment(single) + 0.5, np.reshape(masks.polygons(single)[0], (-1, 2)))


def test_yolo_segment_is_what_ultralytics_makes_of_the_rle():
    """ultralytics' convert_coco turns an RLE into a YOLO segment with cv2.findContours(RETR_EXTERNAL,
    CHAIN_APPROX_SIMPLE), drops contours of fewer than 3 points and joins the rest with merge_multi_segment;
    3 to 5 parts make it reverse some middle parts, which 2 parts never do."""
    import cv2

    converter = pytest.importorskip("ultralytics.data.converter")
    rng = np.random.default_rng(2)
    for _ in range(20):
        m = blobs(100, 100, rng.integers(8, 92, size=(rng.integers(2, 6), 2)).tolist(), 5)
        contours = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
        parts = [c.ravel().tolist() for c in contours if len(c) >= 3]
        if len(parts) > 1:
            expected = np.concatenate(converter.merge_multi_segment(parts))
        else:
            expected = np.reshape(parts, (-1, 2))
        assert np.array_equal(masks.yolo_segment(m), expected)


# --- segmenters -------------------------------------------------------------------------------------------

FAMILIES = {"sam": ("SamModel", "SamProcessor"), "sam_hq": ("SamHQModel", "SamHQProcessor"),
            "sam2": ("Sam2Model", "Sam2Processor")}


@pytest.fixture(scope="module")
def tiny_sams(tmp_path_factory):
    from tiny_models import build_tiny_sam, build_tiny_sam2, build_tiny_sam_hq

    root = tmp_path_factory.mktemp("tiny-sams")
    return {"sam": build_tiny_sam(root / "sam"), "sam_hq": build_tiny_sam_hq(root / "sam_hq"),
            "sam2": build_tiny_sam2(root / "sam2")}


@pytest.fixture(scope="module")
def scenes():
    """Two images of different sizes and aspect ratios with 1 and 2 fractional boxes."""
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)),
              Image.fromarray(rng.integers(0, 256, (70, 50, 3), dtype=np.uint8))]
    boxes = [[[5.3, 5.0, 40.7, 30.2]], [[3.0, 4.0, 30.0, 60.0], [10.0, 12.5, 45.5, 50.0]]]
    return images, boxes


def oracle(folder, family, image, box):
    """transformers as its docs show it, one image and one box: processor, full forward with the pixels,
    post_process_masks, the multimask output with the highest predicted IoU. (mask, iou, logits at the
    original size)."""
    import torch
    import transformers

    model_class, processor_class = (getattr(transformers, name) for name in FAMILIES[family])
    processor, model = processor_class.from_pretrained(folder), model_class.from_pretrained(folder).eval()
    inputs = processor(images=[image], input_boxes=[[box]], return_tensors="pt")
    with torch.inference_mode():
        out = model(**inputs, multimask_output=True)
    sizes = [inputs["original_sizes"]] + ([inputs["reshaped_input_sizes"]] if family != "sam2" else [])
    binary = processor.post_process_masks(out.pred_masks, *sizes)[0][0]  # (3, H, W)
    logits = processor.post_process_masks(out.pred_masks, *sizes, binarize=False)[0][0]
    best = int(out.iou_scores[0, 0].argmax())
    return binary[best].numpy(), float(out.iou_scores[0, 0, best]), logits[best].numpy()


def same_mask(got, expected, logits):
    """Equal, except where the oracle's logit is within float noise of the threshold (batching may move the
    last bits of a logit)."""
    assert got.dtype == bool and got.shape == expected.shape
    differ = got != expected
    assert not (differ & (np.abs(logits) > 1e-3)).any()
    assert differ.sum() <= 2


@pytest.mark.parametrize("family", list(FAMILIES))
def test_segment_equals_a_plain_transformers_loop(tiny_sams, scenes, family):
    images, boxes = scenes
    seg = create_segmenter(tiny_sams[family], device="cpu")
    assert seg.family == family
    seg.load()
    found = seg.segment(images, boxes)
    assert [len(f) for f in found] == [1, 2]
    for image, image_boxes, results in zip(images, boxes, found):
        for box, result in zip(image_boxes, results):
            mask, iou, logits = oracle(tiny_sams[family], family, image, box)
            assert result["mask"].shape == (image.height, image.width)
            same_mask(result["mask"], mask, logits)
            assert 0 < result["mask"].sum() < result["mask"].size  # the comparison is not between two blanks
            assert result["iou"] == pytest.approx(iou, rel=1e-4, abs=1e-5)
    # one encoder pass for the call, one image through it per image with boxes
    assert (seg.describe()["encoder_passes"], seg.describe()["images_encoded"]) == (1, 2)


@pytest.mark.parametrize("family", ["sam", "sam2"])
def test_batch_of_one_equals_batch_of_two(tiny_sams, scenes, family):
    images, boxes = scenes
    seg = create_segmenter(tiny_sams[family], device="cpu")
    seg.load()
    together = seg.segment(images, boxes)
    alone = [seg.segment([im], [b])[0] for im, b in zip(images, boxes)]
    for a_image, t_image in zip(alone, together):
        for a, t in zip(a_image, t_image):
            assert np.array_equal(a["mask"], t["mask"])
            assert a["iou"] == pytest.approx(t["iou"], rel=1e-4, abs=1e-5)
    # an image without boxes gets no masks and is not encoded
    seg.images_encoded = seg.encoder_passes = 0
    mixed = seg.segment([images[0], images[1], images[0]], [boxes[0], [], boxes[0]])
    assert mixed[1] == [] and seg.images_encoded == 2 and seg.encoder_passes == 1
    assert np.array_equal(mixed[2][0]["mask"], together[0][0]["mask"])
    assert seg.segment([images[0]], [[]]) == [[]] and seg.encoder_passes == 1


def test_segmenter_family(tiny_sams, tmp_path):
    assert {f: segmenter_family(p) for f, p in tiny_sams.items()} == {f: f for f in tiny_sams}
    for ref, family in {"facebook/sam-vit-base": "sam", "nielsr/slimsam-50-uniform": "sam",
                        "flaviagiammarino/medsam-vit-base": "sam", "syscv-community/sam-hq-vit-base": "sam_hq",
                        "facebook/sam2.1-hiera-tiny": "sam2", "facebook/sam2-hiera-large": "sam2"}.items():
        assert segmenter_family(ref) == family, ref
    video = tmp_path / "sam21"  # the SAM 2.1 checkpoints on the hub are video checkpoints
    video.mkdir()
    (video / "config.json").write_text(json.dumps({"model_type": "sam2_video"}))
    assert segmenter_family(video) == "sam2"
    owl = tmp_path / "owl"
    owl.mkdir()
    (owl / "config.json").write_text(json.dumps({"model_type": "owlv2"}))
    with pytest.raises(UserError, match="not a SAM-family model") as err:
        segmenter_family(owl)
    assert "\n" not in str(err.value)
    (owl / "config.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        segmenter_family(owl)


def test_sam21_video_checkpoint_segments_as_an_image_model(tiny_sams, scenes, tmp_path):
    """The SAM 2.1 checkpoints on the hub are Sam2VideoModel ones (model_type "sam2_video"): Sam2Model loads
    their image weights."""
    import shutil

    import torch
    from transformers import Sam2Config, Sam2VideoConfig, Sam2VideoModel

    image_config = Sam2Config.from_pretrained(tiny_sams["sam2"])
    torch.manual_seed(0)
    video = Sam2VideoModel(Sam2VideoConfig(vision_config=image_config.vision_config.to_dict(),
                                           prompt_encoder_config=image_config.prompt_encoder_config.to_dict(),
                                           mask_decoder_config=image_config.mask_decoder_config.to_dict()))
    video.save_pretrained(tmp_path)
    shutil.copy(tiny_sams["sam2"] / "processor_config.json", tmp_path)
    seg = create_segmenter(tmp_path, device="cpu")
    assert seg.family == "sam2"
    seg.load()
    weights = video.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in seg.model.state_dict().items())
    images, boxes = scenes
    assert [[r["mask"].shape for r in f] for f in seg.segment(images, boxes)] == [[(48, 80)], [(70, 50)] * 2]


def test_load_reads_the_family_from_the_config(tiny_sams, tmp_path):
    """A hub id's family is a guess from its name; load() goes by the checkpoint's config."""
    from imaginarynet.segmenters.sam import SamSegmenter

    seg = SamSegmenter(str(tiny_sams["sam2"]), "sam", device="cpu")
    seg.load()
    assert seg.family == "sam2" and type(seg.model).__name__ == "Sam2Model"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "owlv2"}))
    with pytest.raises(UserError, match="is not a SAM-family model"):
        SamSegmenter(str(tmp_path), "sam", device="cpu").load()


def test_missing_model_says_which_download_to_run():
    seg = create_segmenter("imaginarynet-tests/no-such-sam", device="cpu")
    with pytest.raises(UserError, match="imaginarynet download --segmenter imaginarynet-tests/no-such-sam") as err:
        seg.load()
    assert "\n" not in str(err.value)


def test_creating_a_segmenter_loads_no_model_library(tiny_sams):
    code = ("import sys; from imaginarynet.segmenters import create_segmenter; from imaginarynet import masks; "
            f"create_segmenter({str(tiny_sams['sam2'])!r}).describe(); "
            "assert not {'torch', 'transformers', 'pycocotools', 'cv2'} & set(sys.modules), sys.modules.keys()")
    subprocess.run([sys.executable, "-c", code], check=True)
