"""GPT-2 prompt expansion and the CLIP filter with quota refill, on tiny real models."""
import json

import numpy as np
import pytest
from helpers import image_bytes, kill_midway, read_jsonl, run_cli, run_main, write_classfile

from imaginarynet.filters.clip import ClipFilter, decide
from imaginarynet.prompts.gpt2 import cut_continuation


@pytest.fixture
def classes(tmp_path):
    return write_classfile(tmp_path / "classes.txt", ["dog", "cat", "bird"])


def gpt_args(tiny):
    return ["--gpt", "--gpt-model", tiny["gpt2"]]


def clip_args(tiny):
    return ["--clip", "--clip-pretrained", f"local-dir:{tiny['clip']}"]


def prompts_of(out):
    return {m["id"]: (m["class"], m["prompt"], m["seed"]) for m in read_jsonl(out / "metadata.jsonl")}


def test_gpt_prompts_start_with_template_unique_and_deterministic(tiny, tiny_sd_args, classes, tmp_path):
    runs = {}
    for name, bs in (("a", 4), ("b", 4), ("c", 1)):
        out = tmp_path / name
        assert run_main(["--num", 24, "--classfile", classes, "--outputdir", out, "--batch-size", bs,
                         *tiny_sd_args, *gpt_args(tiny)]) == 0
        runs[name] = out
    meta = read_jsonl(runs["a"] / "metadata.jsonl")
    for label in ("dog", "cat", "bird"):
        ps = [m["prompt"] for m in meta if m["class"] == label]
        assert len(ps) == 8 and len(set(ps)) == 8
        assert all(p.startswith(f"A photo of a {label}") for p in ps)
        assert (runs["a"] / "prompts" / f"{label}.txt").read_text().splitlines() == ps
    assert prompts_of(runs["a"]) == prompts_of(runs["b"]) == prompts_of(runs["c"])
    run = json.loads((runs["a"] / "run.json").read_text())
    assert run["models"]["prompts"]["prompts"] == "gpt2"


def test_gpt_samples_a_block_per_forward_pass(tiny, tmp_path):
    """16 continuations of a class come from one batched pass per token, not one call per prompt."""
    from imaginarynet.classes import ImageClass
    from imaginarynet.config import RunConfig
    from imaginarynet.prompts import create_prompt_source
    from imaginarynet.prompts.gpt2 import BLOCK

    cfg = RunConfig(classfile="x", classes=[ImageClass("dog", "dog")], outputdir=tmp_path, gpt=True,
                    gpt_model=str(tiny["gpt2"]), gpt_max_tokens=15)
    def counted(expander):
        """Count the model's real forward calls and their batch sizes (not the expander's own counter)."""
        calls, forward = [], expander.model.forward

        def wrapper(*args, **kwargs):
            calls.append(kwargs["input_ids"].shape[0])
            return forward(*args, **kwargs)

        expander.model.forward = wrapper
        return calls

    gpt = create_prompt_source(cfg, tmp_path / ".state")
    gpt.load()
    calls = counted(gpt)
    prompts = gpt.prompts(cfg.classes[0], list(range(BLOCK // 2)))
    prefix_len = len(gpt.tokenizer("A photo of a dog").input_ids)
    assert calls == [BLOCK] * (15 - prefix_len)  # one pass of the whole block per new token
    # a second expander reads the cached block back instead of sampling again
    again = create_prompt_source(cfg, tmp_path / ".state")
    again.load()
    calls = counted(again)
    assert again.prompts(cfg.classes[0], list(range(BLOCK // 2))) == prompts and calls == []


def test_cut_at_first_sentence_end():
    assert cut_continuation("A photo of a dog", " on a  beach. Then more") == "A photo of a dog on a beach."
    assert cut_continuation("A photo of a dog", " running!\nNext") == "A photo of a dog running!"
    assert cut_continuation("A photo of a dog", "\nnew line") == "A photo of a dog"


# The rule, checked against softmax values worked out by hand: three classes,
# cosines c give logits 100c; softmax p_i = exp(100 c_i) / sum_j exp(100 c_j).
# cos (0.30, 0.29, 0.20): logits 30, 29, 20 -> p0 = 1 / (1 + e^-1 + e^-10) = 0.731040...
P0 = 1 / (1 + np.exp(-1) + np.exp(-10))


@pytest.mark.parametrize("cosines, cls, threshold, accepted, prob", [
    ((0.30, 0.29, 0.20), 0, 0.6, True, P0),  # top-1 and 0.731 >= 0.6
    ((0.30, 0.29, 0.20), 0, 0.75, False, P0),  # top-1 but below threshold
    ((0.30, 0.29, 0.20), 1, 0.0, False, np.exp(-1) * P0),  # not top-1: rejected even at threshold 0
    ((0.25, 0.25, 0.25), 0, 0.6, False, 1 / 3),
    ((0.25, 0.25, 0.10), 1, 0.4, False, 1 / (2 + np.exp(-15))),  # tie: argmax picks class 0
])
def test_decision_rule_matches_hand_computed_softmax(cosines, cls, threshold, accepted, prob):
    s = decide(np.array(cosines), cls, threshold, ["a", "b", "c"])
    assert s["accepted"] is accepted
    assert s["prob"] == pytest.approx(prob, abs=1e-6)
    assert s["cos"] == pytest.approx(cosines[cls])


def test_threshold_boundary_is_inclusive():
    # two classes, cos (0.01, 0): p0 = 1 / (1 + e^-1); a threshold of exactly p0 keeps the image
    p0 = float(1 / (1 + np.exp(-1.0)))
    cos = np.array([0.01, 0.0])
    assert decide(cos, 0, p0, ["a", "b"])["accepted"]  # p >= threshold: a `>` would reject it
    assert not decide(cos, 0, float(np.nextafter(p0, 1.0)), ["a", "b"])["accepted"]
    # threshold 1.0 keeps only images whose probability rounds to exactly 1 in float64
    assert decide(np.array([0.1, 0.0]), 0, 1.0, ["a", "b"])["accepted"] is False  # p = 1 - 4.5e-5


def rejecting(rejected: set[tuple[str, int]]):
    """Cosines that make CLIP reject exactly the attempts in `rejected` (and accept the others)."""
    def cosines(self, candidates):
        n = len(self.labels)
        rows = np.zeros((len(candidates), n))
        for row, c in zip(rows, candidates):
            if (c.label, c.k) in rejected:
                row[(c.class_index + 1) % n] = 0.3  # another class wins
            else:
                row[c.class_index] = 0.3
        return rows
    return cosines


def test_refill_keeps_first_q_accepted_attempts(tiny, tiny_sd_args, classes, tmp_path, monkeypatch):
    rejected = {("dog", 0), ("dog", 2), ("cat", 1), ("cat", 2), ("cat", 3), ("bird", 5)}
    monkeypatch.setattr(ClipFilter, "cosines", rejecting(rejected))
    out = tmp_path / "refill"
    assert run_main(["--per-class", 3, "--classfile", classes, "--outputdir", out, "--batch-size", 2,
                     "--keep-rejected", *tiny_sd_args, *clip_args(tiny)]) == 0
    meta = read_jsonl(out / "metadata.jsonl")
    kept = {label: [m["attempt"] for m in meta if m["class"] == label] for label in ("dog", "cat", "bird")}
    assert kept == {"dog": [1, 3, 4], "cat": [0, 4, 5], "bird": [0, 1, 2]}
    assert [m["id"] for m in meta] == [f"{i:06d}" for i in range(1, 10)]
    assert all(m["clip"]["accepted"] and m["clip"]["top1"] == m["class"] for m in meta)
    ledger = read_jsonl(out / ".state" / "ledger.jsonl")
    assert {(r["class"], r["k"]) for r in ledger if r["status"] == "rejected"} == rejected - {("bird", 5)}
    labels = ["dog", "cat", "bird"]
    for r in ledger:  # every attempt carries its score, kept or not: the planted winner is its top-1
        i = labels.index(r["class"])
        assert r["score"]["top1"] == labels[(i + 1) % 3 if (r["class"], r["k"]) in rejected else i]
    assert sorted(p.name for p in (out / "rejected" / "cat").iterdir()) == ["000001.jpg", "000002.jpg",
                                                                           "000003.jpg"]
    run = json.loads((out / "run.json").read_text())
    assert run["shortfalls"] == [] and {r["class"]: r["attempts"] for r in run["per_class"]} == {
        "dog": 5, "cat": 6, "bird": 3}


def test_text_embeddings_are_computed_once(tiny, tiny_sd_args, classes, tmp_path, monkeypatch):
    calls = []
    original = ClipFilter.encode_texts

    def counting(self, texts):
        calls.append(list(texts))
        return original(self, texts)

    monkeypatch.setattr(ClipFilter, "encode_texts", counting)
    out = tmp_path / "once"
    assert run_main(["--per-class", 3, "--classfile", classes, "--outputdir", out, "--batch-size", 2,
                     "--threshold", 0.0, *tiny_sd_args, *clip_args(tiny)]) == 0
    batches = json.loads((out / "run.json").read_text())["counts"]["attempts"] / 2
    assert batches > 2 and calls == [["a photo of a dog", "a photo of a cat", "a photo of a bird"]]


def test_unreachable_threshold_reports_shortfall_and_strict_exits_1(tiny, tiny_sd_args, classes, tmp_path):
    base = ["--per-class", 1, "--classfile", classes, "--threshold", 1.0, "--max-attempts", 2,
            *tiny_sd_args, *clip_args(tiny)]
    res = run_cli(base + ["--outputdir", tmp_path / "lax"])
    assert res.returncode == 0, res.stderr
    assert "class dog is short of its quota: 0/1 kept after 2 attempts" in res.stderr
    run = json.loads((tmp_path / "lax" / "run.json").read_text())
    assert [s["class"] for s in run["shortfalls"]] == ["dog", "cat", "bird"]
    res = run_cli(base + ["--outputdir", tmp_path / "strict", "--strict"])
    assert res.returncode == 1 and "short of its quota" in res.stderr


def test_kill_9_with_gpt_and_clip_resumes_to_the_same_dataset(tiny, tiny_sd_args, tmp_path):
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    args = ["--num", 24, "--classfile", classes, "--batch-size", 3, "--threshold", 0.5,
            *tiny_sd_args, *gpt_args(tiny), *clip_args(tiny)]
    full, killed = tmp_path / "full", tmp_path / "killed"
    res = run_cli(args + ["--outputdir", full])
    assert res.returncode == 0, res.stderr
    ledger = read_jsonl(full / ".state" / "ledger.jsonl")
    assert {r["status"] for r in ledger} == {"kept", "rejected"}  # the filter really refilled
    kill_midway(args + ["--outputdir", killed], killed, min_lines=9)
    assert run_cli(args + ["--outputdir", killed]).returncode == 0
    assert image_bytes(killed) == image_bytes(full)
    assert (killed / "metadata.jsonl").read_bytes() == (full / "metadata.jsonl").read_bytes()
    assert read_jsonl(killed / ".state" / "ledger.jsonl") == ledger
