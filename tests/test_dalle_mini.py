"""DALL·E mini on current JAX: parity with outputs of the original implementation
(tests/fixtures/dalle_mini, tolerances from its README), cache correctness, and the CLI."""
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import FIXTURES, load_voc, read_jsonl, run_cli, write_classfile
from PIL import Image

jax.config.update("jax_threefry_partitionable", False)  # the original's PRNG stream (fixture README)

from tiny_models import dalle_generate_uncached  # noqa: E402

from imaginarynet.backends.dalle_mini import dallebart as db  # noqa: E402
from imaginarynet.backends.dalle_mini import vqgan as vq  # noqa: E402
from imaginarynet.backends.dalle_mini.loading import config_from, load_params  # noqa: E402
from imaginarynet.backends.dalle_mini.text import TextNormalizer  # noqa: E402

F = FIXTURES / "dalle_mini"
ATOL = 1e-4


@pytest.fixture(scope="module")
def bart():
    assert (F / "dallebart" / "flax_model.msgpack").exists(), f"parity fixtures missing: {F}"
    return load_params(F / "dallebart"), config_from(db.DalleBartConfig, F / "dallebart")


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(F / "dallebart_reference.npz"))


@pytest.fixture(scope="module")
def meta():
    return json.loads((F / "reference_meta.json").read_text())


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(F / "dallebart"))


def tokenize(tok, texts, length=16):
    enc = tok(texts, padding="max_length", truncation=True, max_length=length, return_tensors="np")
    return enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)


def test_text_normalizer_matches_original_on_all_cases():
    cases = json.loads((F / "text_normalizer.json").read_text())["cases"]
    normalize = TextNormalizer(F / "hashtag_words.txt")
    assert len(cases) == 17
    assert [normalize(c["input"]) for c in cases] == [c["normalized"] for c in cases]


def test_processor_ids_and_masks(tokenizer, ref, meta):
    normalize = TextNormalizer(F / "hashtag_words.txt")
    texts = [normalize(p) for p in meta["model_prompts"]]
    assert texts == meta["model_prompts_normalized"]
    ids, mask = tokenize(tokenizer, texts)
    np.testing.assert_array_equal(ids, ref["processor/input_ids"])
    np.testing.assert_array_equal(mask, ref["processor/attention_mask"])
    uids, umask = tokenize(tokenizer, [""] * 3)  # the empty prompt, not normalised
    np.testing.assert_array_equal(uids, ref["processor/input_ids_uncond"])
    np.testing.assert_array_equal(umask, ref["processor/attention_mask_uncond"])


def test_encoder_states(bart, ref):
    params, cfg = bart
    enc = db.encode(params, cfg, ref["processor/input_ids"], ref["processor/attention_mask"])
    np.testing.assert_allclose(np.asarray(enc), ref["encoder/last_hidden_state"], atol=ATOL, rtol=0)
    enc_u = db.encode(params, cfg, ref["processor/input_ids_uncond"][:1], ref["processor/attention_mask_uncond"][:1])
    np.testing.assert_allclose(np.asarray(enc_u), ref["encoder/last_hidden_state_uncond"], atol=ATOL, rtol=0)


def test_teacher_forced_logits(bart, ref):
    params, cfg = bart
    enc = db.encode(params, cfg, ref["processor/input_ids"], ref["processor/attention_mask"])
    logits = db.decode(params, cfg, ref["decoder/decoder_input_ids"], enc, ref["processor/attention_mask"])
    np.testing.assert_allclose(np.asarray(logits), ref["decoder/logits"], atol=ATOL, rtol=1e-5)
    greedy_in = ref["generate/greedy"][:, :-1]
    logits = db.decode(params, cfg, greedy_in, enc, ref["processor/attention_mask"])
    np.testing.assert_allclose(np.asarray(logits), ref["generate/greedy_teacher_forced_logits"], atol=ATOL, rtol=1e-5)


SAMPLED = {
    "cfg3_top1": (db.Sampling(top_k=1, condition_scale=3.0), 0),
    "sample_topk4_seed42": (db.Sampling(top_k=4), 42),
    "sample_cfg10_seed0": (db.Sampling(condition_scale=10.0), 0),  # notebook defaults: top_k from config (50)
    "sample_cfg3_k8_p0.9_t0.7_seed7": (db.Sampling(top_k=8, top_p=0.9, temperature=0.7, condition_scale=3.0), 7),
}


def test_greedy_tokens_exact(bart, ref):
    params, cfg = bart
    seqs = db.generate(params, cfg, ref["processor/input_ids"], ref["processor/attention_mask"],
                       sampling=db.Sampling(do_sample=False))
    np.testing.assert_array_equal(np.asarray(seqs), ref["generate/greedy"])


@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_sampled_and_super_conditioned_tokens_exact(bart, ref, name):
    params, cfg = bart
    sampling, seed = SAMPLED[name]
    seqs = db.generate(params, cfg, ref["processor/input_ids"], ref["processor/attention_mask"],
                       jax.random.PRNGKey(seed), sampling, ref["processor/input_ids_uncond"],
                       ref["processor/attention_mask_uncond"])
    np.testing.assert_array_equal(np.asarray(seqs), ref[f"generate/{name}"])


def test_prng_stream(ref):
    key = jax.random.PRNGKey(42)
    np.testing.assert_array_equal(np.asarray(key), ref["prng/PRNGKey42"])
    split = jax.random.split(key)
    np.testing.assert_array_equal(np.asarray(split), ref["prng/split_PRNGKey42"])
    np.testing.assert_array_equal(np.asarray(jax.random.gumbel(split[0], (3, 48))), ref["prng/gumbel_split0_3x48"])
    draw = jax.random.categorical(split[0], ref["decoder/logits"][:, 0], axis=-1)
    np.testing.assert_array_equal(np.asarray(draw), ref["prng/categorical_split0_decoder_logits_step0"])


def test_cached_decoder_equals_full_recompute(bart, ref):
    params, cfg = bart
    ids, mask = ref["processor/input_ids"], ref["processor/attention_mask"]
    cached = db.generate(params, cfg, ids, mask, sampling=db.Sampling(do_sample=False))
    full = dalle_generate_uncached(params, cfg, ids, mask)
    np.testing.assert_array_equal(np.asarray(cached), np.asarray(full))


def test_per_row_keys_make_rows_independent_of_the_batch(bart, ref):
    """ImaginaryNet's contract: an image depends on its own seed, not on its batch-mates."""
    params, cfg = bart
    ids, mask = ref["processor/input_ids"], ref["processor/attention_mask"]
    uids, umask = ref["processor/input_ids_uncond"], ref["processor/attention_mask_uncond"]
    s = db.Sampling(condition_scale=3.0, per_row_keys=True)
    keys = np.stack([np.asarray(jax.random.PRNGKey(k)) for k in (11, 12, 13)])
    batch = np.asarray(db.generate(params, cfg, ids, mask, keys, s, uids, umask))
    for i in range(3):
        alone = np.asarray(db.generate(params, cfg, ids[i:i + 1], mask[i:i + 1], keys[i:i + 1], s, uids, umask))
        np.testing.assert_array_equal(alone[0], batch[i])
    # with one row, a per-row key chain is the original's batch key chain
    shared = db.generate(params, cfg, ids[:1], mask[:1], jax.random.PRNGKey(11),
                         db.Sampling(condition_scale=3.0), uids, umask)
    np.testing.assert_array_equal(np.asarray(shared)[0], batch[0])


def test_vqgan_decode(bart):
    params = load_params(F / "vqgan")
    cfg = config_from(vq.VQGANConfig, F / "vqgan")
    r = np.load(F / "vqgan_reference.npz")
    np.testing.assert_allclose(np.asarray(vq.codes_to_latents(params, cfg, r["vqgan/codes"])), r["vqgan/z_q"],
                               atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.asarray(vq.decode_code(params, cfg, r["vqgan/codes"])), r["vqgan/decoded"],
                               atol=ATOL, rtol=0)


def test_end_to_end_prompt_to_uint8_image(bart, tokenizer, meta):
    params, cfg = bart
    e = np.load(F / "e2e_reference.npz")
    text = TextNormalizer(F / "hashtag_words.txt")(meta["e2e_prompt"])
    assert text == meta["e2e_prompt_normalized"]
    ids, mask = tokenize(tokenizer, [text])
    np.testing.assert_array_equal(ids, e["e2e/input_ids"])
    seqs = np.asarray(db.generate(params, cfg, ids, mask, sampling=db.Sampling(do_sample=False)))
    np.testing.assert_array_equal(seqs, e["e2e/sequences"])
    vq_params = load_params(F / "vqgan")
    vq_cfg = config_from(vq.VQGANConfig, F / "vqgan")
    pixels = np.asarray(vq.decode_code(vq_params, vq_cfg, seqs[:, 1:]))
    np.testing.assert_allclose(pixels, e["e2e/decoded_float"], atol=ATOL, rtol=0)
    image = vq.to_uint8(pixels)
    # exact, except where the float pixels differ by more than ~1e-6 (fixture README: a value within
    # 1e-3/255 of a floor boundary may then land on the other side)
    exact = np.abs(pixels - e["e2e/decoded_float"]) <= 1e-6
    np.testing.assert_array_equal(image[exact], e["e2e/image_uint8"][exact])
    assert np.abs(image.astype(int) - e["e2e/image_uint8"]).max() <= 1


def _jpeg_like(reference: np.ndarray, written: Path) -> np.ndarray:
    """The reference pixels after the same JPEG encoding as the written file (its quantization
    tables and chroma subsampling), decoded: what the file must decode to if the pixels were equal."""
    import io

    from PIL import JpegImagePlugin

    with Image.open(written) as im:
        qtables, subsampling = im.quantization, JpegImagePlugin.get_sampling(im)
    buf = io.BytesIO()
    Image.fromarray(reference).save(buf, format="JPEG", qtables=qtables, subsampling=subsampling)
    return np.asarray(Image.open(buf))


@pytest.mark.parametrize("scale, key", [(1, "e2e"), (3, "generate/cfg3_top1")])
def test_cli_backend_path_reproduces_the_original(bart, ref, tmp_path, scale, key):
    """The CLI, on the original's checkpoint: --top-k 1 is greedy (on guided logits with super-conditioning),
    so the written image must be the original's image for the fixture prompt, JPEG encoding aside."""
    classes = write_classfile(tmp_path / "c.txt", ["lake"])
    out = tmp_path / "out"
    res = run_cli(["--backend", "dalle-mini", "--dalle-model", F / "dallebart", "--vqgan-model", F / "vqgan",
                   "--num", 1, "--classfile", classes, "--outputdir", out, "--template",
                   "sunset over a {name} in the mountains", "--top-k", 1, "--condition-scale", scale,
                   "--device", "cpu", "--quiet", "--no-report"])
    assert res.returncode == 0, res.stderr
    if key == "e2e":
        want = np.load(F / "e2e_reference.npz")["e2e/image_uint8"][0]
    else:  # the original's tokens for the same prompt (row 0), through the VQGAN checked above
        tokens = ref[key][:1, 1:]
        vq_params, vq_cfg = load_params(F / "vqgan"), config_from(vq.VQGANConfig, F / "vqgan")
        want = vq.to_uint8(np.asarray(vq.decode_code(vq_params, vq_cfg, tokens)))[0]
    written = out / "VOC2007" / "JPEGImages" / "000001.jpg"
    np.testing.assert_array_equal(np.asarray(Image.open(written)), _jpeg_like(want, written))


def test_checkpoint_layout_matches_published_tree():
    """Our shape spec (used for tiny checkpoints and memory figures) is the original's parameter tree."""
    from imaginarynet.backends.dalle_mini.shapes import dallebart_shapes, vqgan_decoder_shapes

    def flat(tree, prefix=""):
        out = {}
        for k, v in tree.items():
            out.update(flat(v, f"{prefix}{k}/") if isinstance(v, dict) else {prefix + k: tuple(np.shape(v))
                                                                                if not isinstance(v, tuple) else v})
        return out

    listed = {}
    for line in (F / "params_tree.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            path, shape, _ = line.split("\t")
            listed[path] = tuple(json.loads(shape.replace("(", "[").replace(",)", "]").replace(")", "]")))
    ours = flat(dallebart_shapes(config_from(db.DalleBartConfig, F / "dallebart")))
    ours.update(flat(vqgan_decoder_shapes(config_from(vq.VQGANConfig, F / "vqgan"))))
    decoder_side = {k: v for k, v in listed.items() if not k.startswith(("encoder/", "quant_conv/"))}
    assert ours == decoder_side


def test_cli_dalle_mini_writes_a_valid_256px_voc_dataset(tiny, tmp_path):
    from tiny_models import build_tiny_dalle

    models = build_tiny_dalle(tmp_path / "dalle")
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    out = tmp_path / "out"
    args = ["--backend", "dalle-mini", "--dalle-model", models / "dallebart", "--vqgan-model", models / "vqgan",
            "--num", 4, "--classfile", classes, "--outputdir", out, "--batch-size", 3]
    res = run_cli(args)
    assert res.returncode == 0, res.stderr
    ds = load_voc(out)
    assert len(ds) == 4
    for img, target in ds:
        size = target["annotation"]["size"]
        assert img.size == (256, 256) == (int(size["width"]), int(size["height"]))
    assert run_cli(["check", out]).returncode == 0
    run = json.loads((out / "run.json").read_text())
    assert run["models"]["generator"]["backend"] == "dalle-mini" and run["models"]["generator"]["image_size"] == 256
    # batch size does not change prompts, seeds or tokens (per-image key chains)
    out1 = tmp_path / "bs1"
    assert run_cli([*args[:-4], "--outputdir", out1, "--batch-size", 1]).returncode == 0
    assert read_jsonl(out1 / "metadata.jsonl") == read_jsonl(out / "metadata.jsonl")
    for name in ("000001.jpg", "000004.jpg"):
        a = np.asarray(Image.open(out / "VOC2007" / "JPEGImages" / name), float)
        b = np.asarray(Image.open(out1 / "VOC2007" / "JPEGImages" / name), float)
        assert np.abs(a - b).mean() < 1.0


def test_batch_split_across_local_devices_keeps_the_images(tmp_path):
    """Data parallel over two (virtual CPU) devices gives the same tokens as one device."""
    import os

    from tiny_models import build_tiny_dalle

    models = build_tiny_dalle(tmp_path / "dalle")
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    args = ["--backend", "dalle-mini", "--dalle-model", models / "dallebart", "--vqgan-model", models / "vqgan",
            "--num", 4, "--classfile", classes, "--batch-size", 4, "--device", "cpu"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_cli(args + ["--outputdir", one]).returncode == 0
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    res = run_cli(args + ["--outputdir", two], env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads((two / "run.json").read_text())["models"]["generator"]["devices"] == 2
    assert json.loads((one / "run.json").read_text())["models"]["generator"]["devices"] == 1
    assert read_jsonl(one / "metadata.jsonl") == read_jsonl(two / "metadata.jsonl")
    for m in read_jsonl(one / "metadata.jsonl"):
        a = np.asarray(Image.open(one / m["file_name"]), float)
        b = np.asarray(Image.open(two / m["file_name"]), float)
        assert np.abs(a - b).mean() < 1.0
