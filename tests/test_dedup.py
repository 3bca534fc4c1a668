"""--dedup: near-duplicates are rejected in attempt order, whatever runs in parallel or is resumed."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from helpers import kill_midway, read_jsonl, report_rows, run_cli, run_main, write_classfile

ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1")  # same floats in one process and in two workers


def greedy(vectors: dict[int, np.ndarray], threshold: float) -> list[int]:
    """The rule, computed here: walk attempts in order, keep one unless it is >= threshold close to a kept one."""
    kept: list[int] = []
    for k in sorted(vectors):
        if all(float(vectors[k] @ vectors[j]) < threshold for j in kept):
            kept.append(k)
    return kept


def test_planted_embeddings_give_the_greedy_pass_in_attempt_order(tiny, tiny_sd_args, tmp_path, monkeypatch):
    from imaginarynet.filters.clip import ClipFilter

    e = np.eye(4, dtype=np.float32)
    planted = {("dog", 0): e[0], ("dog", 1): e[0], ("dog", 2): e[1], ("dog", 3): (e[0] + e[1]) / np.sqrt(2),
               ("dog", 4): e[2], ("dog", 5): e[3], ("cat", 0): e[2], ("cat", 1): e[2], ("cat", 2): e[2],
               ("cat", 3): e[3], ("cat", 4): e[0], ("cat", 5): e[1]}
    monkeypatch.setattr(ClipFilter, "embed", lambda self, cands: np.stack([planted[c.label, c.k] for c in cands]))
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    out = tmp_path / "out"
    assert run_main(["--per-class", 3, "--classfile", classes, "--outputdir", out, "--dedup", 0.9, "--batch-size", 2,
                     "--clip-pretrained", f"local-dir:{tiny['clip']}", "--no-report", "--quiet", *tiny_sd_args]) == 0
    for label in ("dog", "cat"):
        tried = {k: v for (lab, k), v in planted.items() if lab == label}
        want = greedy(tried, 0.9)[:3]
        got = [m["attempt"] for m in read_jsonl(out / "metadata.jsonl") if m["class"] == label]
        assert got == want, label
    run = json.loads((out / "run.json").read_text())
    dups = {r["class"]: r["duplicates"] for r in run["per_class"]}
    assert dups == {"dog": 1, "cat": 2}  # dog 1 (= dog 0); cat 1 and 2 (= cat 0)


@pytest.fixture(scope="module")
def real(tiny, tiny_sd_args, tmp_path_factory):
    d = tmp_path_factory.mktemp("dedup")
    classes = write_classfile(d / "c.txt", ["dog", "cat"])
    args = ["--per-class", 4, "--classfile", classes, "--dedup", 0.985, "--batch-size", 3, "--clip-pretrained",
            f"local-dir:{tiny['clip']}", "--no-report", *tiny_sd_args]
    single = d / "single"
    res = run_cli(args + ["--outputdir", single], env=ONE_THREAD)
    assert res.returncode == 0, res.stderr
    return d, args, single


def kept_set(out):
    return [(m["class"], m["attempt"]) for m in read_jsonl(out / "metadata.jsonl")]


def independent_embedding(model, preprocess, jpeg) -> np.ndarray:
    """open_clip's own image tower on a written JPEG, normalised here: not the product's code path."""
    import torch
    from PIL import Image

    with torch.no_grad(), Image.open(jpeg) as im:
        f = model.encode_image(preprocess(im.convert("RGB")).unsqueeze(0))[0].numpy()
    return f / np.linalg.norm(f)


def test_stored_embeddings_are_unit_clip_image_features_and_quotas_are_met(real, tiny):
    """Catches raw (unnormalised, norm ~4.6) features: cosines above 1 make nearly every image a "duplicate"
    and a class keeps 1 image of 4, which comparing the product with its own stored vectors never noticed."""
    import open_clip

    d, args, single = real
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny['clip']}")
    model.eval()
    run = json.loads((single / "run.json").read_text())
    assert [(r["kept"], r["target"]) for r in run["per_class"]] == [(4, 4), (4, 4)]
    meta = read_jsonl(single / "metadata.jsonl")
    assert [m["class"] for m in meta] == ["dog"] * 4 + ["cat"] * 4
    for m in meta:
        stored = np.load(single / ".state" / "embeddings" / m["class"] / f"{m['attempt']:06d}.npy")
        assert np.linalg.norm(stored) == pytest.approx(1.0, abs=1e-5)
        again = independent_embedding(model, preprocess, single / m["file_name"])
        assert float(stored @ again) > 0.99  # the same image, through a JPEG round trip


def test_real_embeddings_remove_some_and_workers_keep_the_same_set(real):
    d, args, single = real
    run = json.loads((single / "run.json").read_text())
    assert sum(r["duplicates"] for r in run["per_class"]) > 0  # the threshold really removes images here
    # the stored embeddings, read back: the kept set is the greedy pass over them
    for label in ("dog", "cat"):
        passing = [r["k"] for r in read_jsonl(single / ".state" / "ledger.jsonl")
                   if r["class"] == label and r["status"] == "kept"]
        vectors = {k: np.load(single / ".state" / "embeddings" / label / f"{k:06d}.npy") for k in passing}
        assert [k for lab, k in kept_set(single) if lab == label] == greedy(vectors, 0.985)[:4]
    two = d / "two"
    res = run_cli(args + ["--outputdir", two, "--workers", 2], env=ONE_THREAD)
    assert res.returncode == 0, res.stderr
    assert kept_set(two) == kept_set(single)


def test_kill_9_resume_keeps_the_same_set(real):
    d, args, single = real
    out = d / "killed"
    kill_midway(args + ["--outputdir", out], out, min_lines=3, env=ONE_THREAD)
    res = run_cli(args + ["--outputdir", out], env=ONE_THREAD)
    assert res.returncode == 0, res.stderr
    assert kept_set(out) == kept_set(single)


@pytest.mark.parametrize("value", ["0", "1.5", "-0.2"])
def test_dedup_outside_the_interval_is_refused(value, tiny, tmp_path, capsys):
    classes = write_classfile(tmp_path / "c.txt", ["dog"])
    code = run_main(["--num", 1, "--classfile", classes, "--outputdir", tmp_path / "o", "--sd-model", tiny["sd"],
                     "--dedup", value])
    assert code == 2 and "--dedup must be within (0, 1]" in capsys.readouterr().err


def test_report_diversity_section(real, tmp_path):
    import shutil
    d, _, single = real
    out = tmp_path / "out"
    shutil.copytree(single, out)
    assert run_cli(["report", out]).returncode == 0
    rows = report_rows((out / "report" / "index.html").read_text(), "data-diversity")
    run = json.loads((out / "run.json").read_text())
    meta = read_jsonl(out / "metadata.jsonl")
    for r in run["per_class"]:
        label = r["class"]
        vectors = np.stack([np.load(out / ".state" / "embeddings" / label / f"{m['attempt']:06d}.npy")
                            for m in meta if m["class"] == label])
        sims = (vectors @ vectors.T)[np.triu_indices(len(vectors), 1)]
        cells = rows[label]
        assert cells[4] == str(r["duplicates"])
        assert float(cells[5]) == pytest.approx(float(sims.mean()), abs=1e-4)
        assert float(cells[6]) == pytest.approx(float(np.percentile(sims, 5)), abs=1e-4)
        assert sims.max() < 0.985  # no two kept images of a class are duplicates of each other


def test_with_clip_the_filters_model_embeds_and_rejected_images_are_not_judged(tiny, tiny_sd_args, tmp_path,
                                                                                 monkeypatch):
    """--clip --dedup: one CLIP model (loaded once) scores and embeds; only images CLIP kept get an embedding,
    so a CLIP rejection never counts as an earlier kept image."""
    from imaginarynet.filters.clip import ClipFilter

    loads, embedded = [], []
    original_load = ClipFilter.load

    def counting_load(self):
        loads.append(id(self))
        return original_load(self)

    def cosines(self, cands):  # CLIP keeps even attempts and rejects odd ones
        rows = np.zeros((len(cands), len(self.labels)))
        for row, c in zip(rows, cands):
            row[c.class_index if c.k % 2 == 0 else (c.class_index + 1) % len(self.labels)] = 0.3
        return rows

    def embed(self, cands):
        embedded.extend(c.k for c in cands)
        return np.stack([np.eye(8, dtype=np.float32)[c.k % 8] for c in cands])  # all different

    monkeypatch.setattr(ClipFilter, "load", counting_load)
    monkeypatch.setattr(ClipFilter, "cosines", cosines)
    monkeypatch.setattr(ClipFilter, "embed", embed)
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    out = tmp_path / "out"
    assert run_main(["--per-class", 2, "--classfile", classes, "--outputdir", out, "--clip", "--dedup", 0.9,
                     "--clip-pretrained", f"local-dir:{tiny['clip']}", "--batch-size", 2, "--no-report", "--quiet",
                     *tiny_sd_args]) == 0
    assert len(loads) == 1
    assert all(k % 2 == 0 for k in embedded)
    assert [(m["class"], m["attempt"]) for m in read_jsonl(out / "metadata.jsonl")] == [
        ("dog", 0), ("dog", 2), ("cat", 0), ("cat", 2)]


def test_with_clip_each_image_goes_through_the_image_tower_once(tiny, tiny_sd_args, tmp_path, monkeypatch):
    """--clip --dedup: the embedding --dedup stores is the one CLIP scored with, not a second pass through the
    image tower. Catches the tower running twice per kept image, and a cached vector of another image."""
    from imaginarynet.filters.clip import ClipFilter

    encoded, scored = [], {}
    original_encode, original_cosines = ClipFilter._encode_images, ClipFilter.cosines

    def counting(self, cands):
        encoded.extend((c.label, c.k) for c in cands)
        return original_encode(self, cands)

    def remembering(self, cands):
        out = original_cosines(self, cands)
        cands, feats = self._scored
        scored.update({(c.label, c.k): vector for c, vector in zip(cands, feats.cpu().numpy())})
        return out

    monkeypatch.setattr(ClipFilter, "_encode_images", counting)
    monkeypatch.setattr(ClipFilter, "cosines", remembering)
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    out = tmp_path / "out"
    assert run_main(["--per-class", 2, "--classfile", classes, "--outputdir", out, "--clip", "--threshold", 0,
                     "--dedup", 0.999, "--clip-pretrained", f"local-dir:{tiny['clip']}", "--batch-size", 3,
                     "--no-report", "--quiet", *tiny_sd_args]) == 0
    records = read_jsonl(out / ".state" / "ledger.jsonl")
    assert sorted(encoded) == sorted((r["class"], r["k"]) for r in records)  # once each, rejected ones included
    stored = list((out / ".state" / "embeddings").rglob("*.npy"))
    assert stored and len(stored) == sum(r["status"] == "kept" for r in records)
    for path in stored:
        label, k = path.parent.name, int(path.stem)
        np.testing.assert_array_equal(np.load(path), scored[label, k])
