"""`imaginarynet compose`: copy-paste scenes. Every mask and box is recomputed here from metadata.jsonl alone (the
source instance, its scale, flip and pasted box, the paste order), and the pixels from the background and the
instances; workers, batch sizes and a SIGKILL resume write the same dataset."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import MASK_LABELS
from helpers import kill_midway, read_jsonl, report_rows, run_cli
from PIL import Image

from imaginarynet import masks


@pytest.fixture(scope="module")
def backgrounds(tmp_path_factory):
    d = tmp_path_factory.mktemp("backgrounds")
    rng = np.random.default_rng(2)
    for i, (h, w) in enumerate([(90, 120), (100, 100), (70, 150)]):
        Image.fromarray((rng.random((h, w, 3)) * 90 + 80).astype(np.uint8)).save(d / f"bg{i}.png")
    return d


def compose_args(annotated, backgrounds, out, *extra):
    return ["compose", annotated[2], "--backgrounds", backgrounds, "--outputdir", out, "--num", 8,
            "--objects-per-image", "1-2", "--size", "96x80", "--scale", "0.3-0.8", *extra]


@pytest.fixture(scope="module")
def composed(annotated, backgrounds, tmp_path_factory):
    """compose as a user types it (report included); the blend off so pixels can be recomputed exactly."""
    out = tmp_path_factory.mktemp("composed") / "out"
    res = run_cli(compose_args(annotated, backgrounds, out, "--blend", "none"))
    assert res.returncode == 0, res.stderr
    assert "8/8 images in" in res.stderr
    return out, read_jsonl(out / "metadata.jsonl")


def source_instance(annotated, image_id: str, index: int):
    """(RGB crop, bool mask crop) of a source object, read from the source's own files."""
    _, _, src, rows = annotated
    row = next(r for r in rows if r["id"] == image_id)
    b = row["boxes"][index]
    x1, y1, x2, y2 = b["box"]
    mask = masks.decode(b["mask"])[y1:y2, x1:x2]
    crop = Image.open(src / row["file_name"]).convert("RGB").crop((x1, y1, x2, y2))
    return crop, mask


def resized(mask, flip, w, h):
    image = Image.fromarray(mask.astype(np.float32), mode="F")
    if flip:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(image.resize((w, h), Image.BILINEAR), dtype=np.float32)


def test_every_mask_and_box_follows_from_the_metadata_alone(annotated, backgrounds, composed):
    """Catches a visible mask that is not the resized mask minus the later ones, a box that is not its visible
    mask's, a pasted box outside the image, a scale that is not longer side / shorter side, an occlusion rule
    that lets an instance be hidden below --min-visible, and labels that disagree with the pasted instances."""
    out, rows = composed
    assert len(rows) == 8 and any(len(r["composition"]["instances"]) == 2 for r in rows)
    for row in rows:
        comp = row["composition"]
        W, H = row["width"], row["height"]
        assert (W, H) == (96, 80)
        full = []
        for z, p in enumerate(comp["instances"]):
            assert p["z"] == z and p["source"] == str(annotated[2])
            _, mask = source_instance(annotated, p["image_id"], p["index"])
            x, y, w, h = p["box"]
            assert 0 <= x and x + w <= W and 0 <= y and y + h <= H
            assert max(w, h) == pytest.approx(p["scale"] * min(W, H), abs=1.0)  # sides are rounded
            m = np.zeros((H, W), bool)
            m[y:y + h, x:x + w] = resized(mask, p["flip"], w, h) > 0.5
            full.append(m)
        for i, p in enumerate(comp["instances"]):
            visible = full[i] & ~np.any(full[i + 1:], axis=0) if i + 1 < len(full) else full[i]
            assert np.array_equal(masks.decode(p["visible_mask"]), visible)
            assert p["visible_box"] == masks.bbox(visible)
            assert visible.sum() >= 0.3 * full[i].sum()
        want = [(p["class"], p["visible_box"], p["visible_mask"]) for p in comp["instances"] if p["visible_box"]]
        assert [(b["label"], b["box"], b["mask"]) for b in row["boxes"]] == want
        assert row["class"] == comp["instances"][0]["class"] and row["labels"][0] == row["class"]
    assert run_cli(["check", out]).returncode == 0


def test_pixels_are_the_background_with_the_instances_pasted_in_order(annotated, backgrounds, composed):
    """The scene recomputed here (background resized to cover and centre-cropped as recorded, each instance
    resized, flipped and alpha-blended in z order, rounded) and encoded as every ImaginaryNet image (JPEG
    quality 95) is the written file, byte for byte."""
    import io

    out, rows = composed
    for row in rows[:4]:
        comp = row["composition"]
        bg = Image.open(backgrounds / comp["background"]).convert("RGB")
        x, y, w, h = comp["crop"]
        scale = max(w / bg.width, h / bg.height)
        bg = bg.resize((max(w, round(bg.width * scale)), max(h, round(bg.height * scale))), Image.BILINEAR)
        canvas = np.asarray(bg.crop((x, y, x + w, y + h)), dtype=np.float64).copy()
        for p in comp["instances"]:
            crop, mask = source_instance(annotated, p["image_id"], p["index"])
            px, py, pw, ph = p["box"]
            if p["flip"]:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            pixels = np.asarray(crop.resize((pw, ph), Image.BILINEAR), dtype=np.float64)
            alpha = resized(mask, p["flip"], pw, ph).astype(np.float64)[..., None]
            canvas[py:py + ph, px:px + pw] = alpha * pixels + (1 - alpha) * canvas[py:py + ph, px:px + pw]
        buf = io.BytesIO()
        Image.fromarray(np.clip(np.round(canvas), 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=95)
        assert (out / row["file_name"]).read_bytes() == buf.getvalue()


def test_exports_and_report_of_a_composed_dataset(annotated, composed):
    from pycocotools.coco import COCO

    out, rows = composed
    assert run_cli(["export", out, "--format", "coco"]).returncode == 0
    coco = COCO(str(out / "exports" / "coco_trainval.json"))
    anns = coco.dataset["annotations"]
    assert len(anns) == sum(len(r["boxes"]) for r in rows)
    for ann, b in zip(anns, [b for r in rows for b in r["boxes"]]):
        assert np.array_equal(coco.annToMask(ann).astype(bool), masks.decode(b["mask"]))
    assert run_cli(["export", out, "--format", "yolo-seg"]).returncode == 0
    assert run_cli(["check", out, "--format", "yolo-seg"]).returncode == 0
    table = report_rows((out / "report" / "index.html").read_text(), "data-composition")
    for label in MASK_LABELS:
        pasted = [p for r in rows for p in r["composition"]["instances"] if p["class"] == label]
        small = sum(masks.area(p["visible_mask"]) < 32 ** 2 for p in pasted)
        assert table[label][1:3] == [str(len(pasted)), str(small)]
    run = json.loads((out / "run.json").read_text())
    assert run["models"]["composer"]["instances"] == sum(len(r["boxes"]) for r in annotated[3])


def test_workers_batch_sizes_shards_and_a_kill_make_the_same_dataset(annotated, backgrounds, composed, tmp_path):
    out, rows = composed
    want = [(r["id"], r["composition"], r["boxes"]) for r in rows]
    runs = {"b1": [["--batch-size", 1]], "w2": [["--workers", 2, "--batch-size", 3]],
            "shards": [["--shard", "0/2"], ["--shard", "1/2"]]}
    for name, slices in runs.items():
        for extra in slices:
            res = run_cli(compose_args(annotated, backgrounds, tmp_path / name, "--blend", "none", "--quiet", *extra))
            assert res.returncode == 0, res.stderr
        got = read_jsonl(tmp_path / name / "metadata.jsonl")
        assert [(r["id"], r["composition"], r["boxes"]) for r in got] == want
        for r in rows:
            assert (tmp_path / name / r["file_name"]).read_bytes() == (out / r["file_name"]).read_bytes()
    killed = tmp_path / "killed"
    args = compose_args(annotated, backgrounds, killed, "--blend", "none", "--batch-size", 1, "--num", 80)
    kill_midway(args, killed, 2)
    assert not (killed / "metadata.jsonl").exists()  # killed before it assembled
    res = run_cli(args)
    assert res.returncode == 0, res.stderr
    again = read_jsonl(killed / "metadata.jsonl")
    full = tmp_path / "full"
    res = run_cli(compose_args(annotated, backgrounds, full, "--blend", "none", "--num", 80, "--quiet"))
    assert res.returncode == 0, res.stderr
    assert again == read_jsonl(full / "metadata.jsonl")


def test_the_blend_softens_only_the_edges(annotated, backgrounds, tmp_path):
    """--blend gaussian (the default) changes pixels near instance edges only; labels stay exact."""
    sharp, soft = tmp_path / "sharp", tmp_path / "soft"
    for out, extra in ((sharp, ["--blend", "none"]), (soft, [])):
        res = run_cli(compose_args(annotated, backgrounds, out, "--quiet", "--no-report", *extra))
        assert res.returncode == 0, res.stderr
    a, b = read_jsonl(sharp / "metadata.jsonl"), read_jsonl(soft / "metadata.jsonl")
    assert [r["boxes"] for r in a] == [r["boxes"] for r in b]
    assert any((sharp / r["file_name"]).read_bytes() != (soft / r["file_name"]).read_bytes() for r in a)


@pytest.mark.parametrize("case, message", [
    ("no backgrounds", "compose needs --backgrounds"),
    ("empty backgrounds", "holds no JPEG, PNG or WebP image"),
    ("bad scale", "--scale 0.5-2: need 0 < MIN <= MAX <= 1"),
    ("not a dataset", "is not an ImaginaryNet output directory"),
    ("classfile lacks", "--classfile lacks cat"),
])
def test_compose_bad_input_is_one_line_exit_2(annotated, backgrounds, tmp_path, case, message):
    src = annotated[2]
    args = ["compose", src, "--backgrounds", backgrounds, "--outputdir", tmp_path / "out"]
    if case == "no backgrounds":
        args = ["compose", src, "--outputdir", tmp_path / "out"]
    elif case == "empty backgrounds":
        (tmp_path / "empty").mkdir()
        args[3] = tmp_path / "empty"
    elif case == "bad scale":
        args += ["--scale", "0.5-2"]
    elif case == "not a dataset":
        args[1] = tmp_path
    else:
        (tmp_path / "c.txt").write_text("dog\n")
        args += ["--classfile", tmp_path / "c.txt"]
    res = run_cli(args)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and message in res.stderr, res.stderr
    assert not (tmp_path / "out" / "VOC2007").exists()


def test_compose_as_the_readme_types_it(annotated, backgrounds, tmp_path):
    """`imaginarynet compose SOURCE --backgrounds DIR --outputdir OUT --num N` with every default: each scene keeps
    its background's size, the alpha is blurred, the summary and report are written, and check passes."""
    out = tmp_path / "out"
    res = run_cli(["compose", annotated[2], "--backgrounds", backgrounds, "--outputdir", out, "--num", 6])
    assert res.returncode == 0, res.stderr
    assert f"6/6 images in {out / 'VOC2007'}" in res.stderr and "kept" in res.stderr  # the summary table
    sizes = {Image.open(p).size for p in backgrounds.iterdir()}
    for row in read_jsonl(out / "metadata.jsonl"):
        assert (row["width"], row["height"]) in sizes
        for b in row["boxes"]:
            assert b["box"] == masks.bbox(masks.decode(b["mask"]))
    assert run_cli(["check", out]).returncode == 0
    assert "data-composition" in (out / "report" / "index.html").read_text()


def test_one_image_record_reads_back_what_was_written(annotated, composed):
    """A metadata.jsonl row read back as the image record (dataset.entry_of_row) writes the same row again
    (dataset.metadata_row), for detector + mask rows and composed rows alike; catches a field the reader
    drops or renames, which every export would then lose."""
    from imaginarynet.dataset import entry_of_row, metadata_row

    for out, rows in ((annotated[2], annotated[3]), composed):
        for row in rows:
            entry = entry_of_row(row, out)
            assert entry.path == out / row["file_name"] and entry.path.exists()
            assert metadata_row(entry, row["file_name"]) == row


def test_sigterm_commits_what_is_composed_and_the_same_command_finishes(annotated, backgrounds, tmp_path):
    """A SLURM pre-emption (SIGTERM) mid-compose: exit 143 with the one line, every finished scene kept in the
    ledger, and the same command finishes the dataset an uninterrupted run makes."""
    import signal

    from helpers import ledger_lines, start_cli, wait_for_lines

    out, full = tmp_path / "stopped", tmp_path / "full"
    args = compose_args(annotated, backgrounds, out, "--blend", "none", "--batch-size", 1, "--num", 80)
    proc = start_cli(args)
    wait_for_lines(proc, out, 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("interrupted by SIGTERM; finished work is kept")
    assert ledger_lines(out) >= 3
    assert run_cli(args).returncode == 0
    res = run_cli(compose_args(annotated, backgrounds, full, "--blend", "none", "--num", 80, "--quiet"))
    assert res.returncode == 0, res.stderr
    assert read_jsonl(out / "metadata.jsonl") == read_jsonl(full / "metadata.jsonl")


def test_a_finished_composition_is_not_redone_and_other_options_are_refused(annotated, backgrounds, composed):
    """The same command on a finished OUT does nothing (no model, no scene); another --scale changes the data
    and is refused in one line naming it, leaving the dataset as it was."""
    out, rows = composed
    before = (out / "metadata.jsonl").read_bytes()
    same = run_cli(compose_args(annotated, backgrounds, out, "--blend", "none"))
    assert same.returncode == 0 and "already complete" in same.stderr, same.stderr
    other = run_cli(compose_args(annotated, backgrounds, out, "--blend", "none", "--scale", "0.2-0.5"))
    assert other.returncode == 2 and other.stderr.count("\n") == 1 and "scale" in other.stderr, other.stderr
    assert (out / "metadata.jsonl").read_bytes() == before
