"""Exports parsed back by the libraries their consumers use; proposals; the check command."""
import json
import pickle
import shutil

import numpy as np
import pytest
from helpers import read_jsonl, run_cli, run_main
from PIL import Image


@pytest.fixture(scope="module")
def dataset(tiny, tiny_sd_args, tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    classes = d / "classes.txt"
    classes.write_text("dog\ndiningtable: dining table\ncat\n")
    out = d / "out"
    assert run_main(["--num", 8, "--classfile", classes, "--outputdir", out, "--batch-size", 4, *tiny_sd_args]) == 0
    return out


@pytest.fixture
def dataset_copy(dataset, tmp_path):
    """The module's dataset, copied for a test that writes into it (exports, proposals): tests that
    share `dataset` never see each other's files."""
    out = tmp_path / "out"
    shutil.copytree(dataset, out)
    return out


def trainval(out):
    return (out / "VOC2007" / "ImageSets" / "Main" / "trainval.txt").read_text().split()


def test_coco_loads_in_pycocotools(dataset_copy):
    dataset = dataset_copy
    from pycocotools.coco import COCO

    assert run_main(["export", dataset, "--format", "coco"]) == 0
    coco = COCO(str(dataset / "exports" / "coco_trainval.json"))
    assert sorted(coco.getImgIds()) == [int(i) for i in trainval(dataset)]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["dog", "diningtable", "cat"]
    assert coco.getCatIds() == [1, 2, 3]
    meta = {int(m["id"]): m for m in read_jsonl(dataset / "metadata.jsonl")}
    for img_id in coco.getImgIds():
        (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        img = coco.loadImgs([img_id])[0]
        assert ann["bbox"] == [0, 0, img["width"], img["height"]] and ann["area"] == img["width"] * img["height"]
        assert coco.loadCats([ann["category_id"]])[0]["name"] == meta[img_id]["class"]
        assert ann["iscrowd"] == 0
        assert (dataset / "VOC2007" / "JPEGImages" / img["file_name"]).exists()
    assert len(coco.getImgIds(catIds=[1])) == 3 and len(coco.getImgIds(catIds=[2])) == 3
    assert run_main(["check", dataset, "--format", "coco"]) == 0
    assert run_main(["export", dataset, "--format", "coco", "--images-only", "--split", "val"]) == 0
    unlabeled = COCO(str(dataset / "exports" / "coco_val_unlabeled.json"))
    assert len(unlabeled.getImgIds()) == 4 and unlabeled.getAnnIds() == []


def test_detic_loads_in_lvis_and_embeddings_match_text_tower(dataset_copy, tiny):
    dataset = dataset_copy
    import open_clip
    import torch
    from lvis import LVIS

    assert run_main(["export", dataset, "--format", "detic", "--clip-pretrained", f"local-dir:{tiny['clip']}"]) == 0
    folder = dataset / "exports" / "detic"
    lvis = LVIS(str(folder / "image_info.json"))
    assert len(lvis.imgs) == 8 and sorted(lvis.cats) == [1, 2, 3]
    meta = {int(m["id"]): m["class"] for m in read_jsonl(dataset / "metadata.jsonl")}
    for img in lvis.dataset["images"]:
        assert lvis.cats[img["pos_category_ids"][0]]["name"] == meta[img["id"]]
        assert img["neg_category_ids"] == [] and img["not_exhaustive_category_ids"] == []
    assert lvis.dataset["annotations"] == []
    assert json.loads((folder / "cat_info.json").read_text()) == [
        {"id": 1, "image_count": 3}, {"id": 2, "image_count": 3}, {"id": 3, "image_count": 2}]
    emb = np.load(folder / "clip_a+cname.npy")
    assert emb.dtype == np.float16 and emb.shape == (3, 32)  # the tiny text tower is 32 wide
    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{tiny['clip']}")
    tok = open_clip.get_tokenizer(f"local-dir:{tiny['clip']}")
    with torch.no_grad():
        want = model.eval().encode_text(tok(["a dog", "a dining table", "a cat"])).numpy()
    np.testing.assert_allclose(emb.astype(np.float32), want, rtol=2e-3, atol=2e-3)
    assert np.abs(np.linalg.norm(want, axis=1) - 1).max() > 0.01  # really unnormalised
    assert run_main(["check", dataset, "--format", "detic"]) == 0


def test_detic_maps_labels_onto_an_lvis_category_list(dataset_copy, tiny, tmp_path):
    dataset = dataset_copy
    cats = [{"id": 7, "name": "dog", "synonyms": ["dog", "domestic_dog"], "frequency": "f"},
            {"id": 3, "name": "kitchen_table", "synonyms": ["kitchen_table", "dining_table"], "frequency": "c"},
            {"id": 12, "name": "cat", "synonyms": ["cat"], "frequency": "f"},
            {"id": 20, "name": "zebra", "synonyms": ["zebra"], "frequency": "r"}]
    path = tmp_path / "lvis_v1_categories.json"
    path.write_text(json.dumps({"categories": cats}))
    args = ["export", dataset, "--format", "detic", "--categories", path,
            "--clip-pretrained", f"local-dir:{tiny['clip']}"]
    assert run_main(args) == 0
    info = json.loads((dataset / "exports" / "detic" / "image_info.json").read_text())
    by_img = {im["id"]: im["pos_category_ids"] for im in info["images"]}
    meta = {int(m["id"]): m["class"] for m in read_jsonl(dataset / "metadata.jsonl")}
    want = {"dog": [7], "diningtable": [3], "cat": [12]}
    assert by_img == {i: want[label] for i, label in meta.items()}
    assert [c["id"] for c in info["categories"]] == [3, 7, 12, 20]
    assert np.load(dataset / "exports" / "detic" / "clip_a+cname.npy").shape[0] == 4  # ascending ids
    path.write_text(json.dumps(cats[:1]))
    res = run_cli(args)
    assert res.returncode == 2 and "no category matches diningtable, cat" in res.stderr


def test_imagefolder_loads_with_datasets(dataset_copy):
    dataset = dataset_copy
    import datasets

    assert run_main(["export", dataset, "--format", "imagefolder"]) == 0
    folder = dataset / "exports" / "imagefolder" / "trainval"
    ds = datasets.load_dataset("imagefolder", data_dir=str(folder), split="train")
    meta = read_jsonl(dataset / "metadata.jsonl")
    assert len(ds) == 8
    assert ds["label"] == [m["class"] for m in meta] and ds["prompt"] == [m["prompt"] for m in meta]
    assert ds["seed"] == [m["seed"] for m in meta]
    assert ds[0]["image"].size == (64, 64)


def test_proposals_in_split_order_with_each_convention(dataset_copy):
    dataset = dataset_copy
    from scipy.io import loadmat

    assert run_main(["proposals", dataset, "--format", "pcl", "--workers", 2, "-q"]) == 0
    assert run_main(["proposals", dataset]) == 0  # as the README types it (oicr); reuses the per-image cache
    ids = trainval(dataset)
    with open(dataset / "proposals" / "selective_search_trainval.pkl", "rb") as f:
        pcl = pickle.load(f)
    mat = loadmat(dataset / "proposals" / "selective_search_trainval.mat")
    assert pcl["indexes"] == [int(i) for i in ids]
    assert [str(x[0]) for x in mat["images"].ravel()] == ids
    import ctypes

    import cv2

    for i, img_id in enumerate(ids):
        path = dataset / "VOC2007" / "JPEGImages" / f"{img_id}.jpg"
        w, h = Image.open(path).size
        # the oracle: opencv-contrib's selective search ("fast"), first 2000 rects, computed here. Its
        # ranking draws from C rand(): seeded with 0 as the product documents, the order is reproducible
        ctypes.CDLL(None).srand(0)
        ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        ss.setBaseImage(cv2.imread(str(path)))
        ss.switchToSelectiveSearchFast()
        x, y, rw, rh = ss.process()[:2000].T
        np.testing.assert_array_equal(pcl["boxes"][i], np.stack([x, y, x + rw - 1, y + rh - 1], axis=1))
        b = pcl["boxes"][i]
        assert b.ndim == 2 and b.shape[1] == 4 and len(b) > 0 and len(pcl["scores"][i]) == len(b)
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w - 1).all() and (b[:, 3] <= h - 1).all()
        assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
        m = mat["boxes"].ravel()[i]
        # OICR: [y1 x1 y2 x2], 1-based: the same boxes as PCL's 0-based [x1 y1 x2 y2]
        np.testing.assert_array_equal(m, b[:, [1, 0, 3, 2]] + 1)
        assert m.min() >= 1 and m[:, 2].max() <= h and m[:, 3].max() <= w
    cache = dataset / ".state" / "proposals" / "selective-search-fast"
    assert sorted(p.stem for p in cache.glob("*.npy")) == ids


def broken_copy(dataset, tmp_path, name):
    out = tmp_path / name
    shutil.copytree(dataset, out)
    return out


def _check(out):
    res = run_cli(["check", out], timeout=60)
    return res.returncode, res.stdout


def test_check_passes_on_a_generated_dataset(dataset):
    assert _check(dataset) == (0, f"{dataset}: voc OK\n")


def test_check_names_each_deliberate_breakage(dataset, tmp_path):
    main = "VOC2007/ImageSets/Main"
    out = broken_copy(dataset, tmp_path, "missing")
    (out / "VOC2007" / "JPEGImages" / "000003.jpg").unlink()
    code, report = _check(out)
    assert code == 1 and "VOC2007/JPEGImages/000003.jpg: missing image" in report

    out = broken_copy(dataset, tmp_path, "size")
    xml = out / "VOC2007" / "Annotations" / "000002.xml"
    xml.write_text(xml.read_text().replace("<width>64</width>", "<width>256</width>"))
    code, report = _check(out)
    assert code == 1 and "VOC2007/Annotations/000002.xml: size 256x64 differs from the image's 64x64" in report

    out = broken_copy(dataset, tmp_path, "unsorted")
    tv = out / main / "trainval.txt"
    ids = tv.read_text().split()
    tv.write_text("\n".join([ids[1], ids[0], *ids[2:]]) + "\n")
    code, report = _check(out)
    assert code == 1 and f"{main}/trainval.txt: ids are not sorted" in report

    out = broken_copy(dataset, tmp_path, "label")
    xml = out / "VOC2007" / "Annotations" / "000001.xml"
    xml.write_text(xml.read_text().replace("<name>dog</name>", "<name>wolf</name>"))
    code, report = _check(out)
    assert code == 1 and "VOC2007/Annotations/000001.xml: unknown label 'wolf'" in report

    out = broken_copy(dataset, tmp_path, "oneline")
    (out / main / "val.txt").write_text("000002\n")
    code, report = _check(out)
    assert code == 1 and f"{main}/val.txt: holds 1 id(s); loaders need at least 2" in report

    out = broken_copy(dataset, tmp_path, "crlf")
    path = out / main / "train.txt"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    code, report = _check(out)
    assert code == 1 and f"{main}/train.txt: has CR line endings" in report
