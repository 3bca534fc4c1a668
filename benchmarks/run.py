"""ImaginaryNet benchmarks: ratios measured side by side in one run, on small random models.

    python benchmarks/run.py [--quick] [--write benchmarks/RESULTS.md]

Each line compares ImaginaryNet with a baseline doing the same work on the same model in the same
process (or the same kind of process), so the ratios hold on any machine; absolute images/s are
printed too (with the device). Models come from tests/tiny_models.py (random weights, real formats).
"""
from __future__ import annotations

import argparse
import inspect
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tiny_models: the tests' builders
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

Row = tuple[str, str, str, str]  # (benchmark, measured, target, verdict)
BENCHMARKS: dict[int, tuple] = {}  # number -> (function, sizes with --quick, full sizes)


def benchmark(number: int, quick: dict | None = None, full: dict | None = None):
    """Register a benchmark: a generator of rows, called with the context it names (models, work, fixtures)
    and its sizes; `--only N` picks by number."""
    def register(fn):
        BENCHMARKS[number] = (fn, quick or {}, full or {})
        return fn
    return register


def row(name: str, measured: str, target: str, ok: bool | None) -> Row:
    verdict = "-" if ok is None else ("pass" if ok else "FAIL")
    print(f"{name}: {measured} (target {target}) {verdict}", flush=True)
    return name, measured, target, verdict


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def throughput_row(title: str, n: int, ours, baseline, target: float = 0.90) -> Row:
    """Our stage against the bare library loop on the same n images: warm both, best of 3, throughput ratio."""
    baseline(), ours()
    t_base, t_ours = best_of(baseline, 3), best_of(ours, 3)
    ratio = t_base / t_ours
    return row(title, f"{n / t_ours:.1f} vs {n / t_base:.1f} img/s, ratio {ratio:.3f}", f">= {target:.2f}",
               ratio >= target)


def random_batches(n: int, bs: int, size: int) -> list[list]:
    """n random RGB images of size x size pixels (seeded), in batches of bs."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]
    return [images[i:i + bs] for i in range(0, n, bs)]


def make_config(**kw):
    from imaginarynet.classes import ImageClass
    from imaginarynet.config import RunConfig, validate

    classes = [ImageClass(label, label) for label in ("dog", "cat", "bird", "horse")]
    base = dict(classfile="bench", classes=classes, quiet=True, report=False, overwrite=True)
    base.update(kw)
    return validate(RunConfig(**base))


# ------------------------------------------------------------------ 1. pipeline overhead
@benchmark(1, quick=dict(n=8, steps=4, res=128, bs=8), full=dict(n=32, steps=10, res=128, bs=8))
def bench_overhead(models, work: Path, n: int, steps: int, res: int, bs: int) -> Iterator[Row]:
    import torch
    from diffusers import AutoPipelineForText2Image

    from imaginarynet.pipeline import run as generate

    def bare():
        pipe = AutoPipelineForText2Image.from_pretrained(str(models["sd"]))
        pipe.set_progress_bar_config(disable=True)
        out = work / "bare"
        out.mkdir(exist_ok=True)
        for start in range(0, n, bs):
            count = min(bs, n - start)
            gens = [torch.Generator().manual_seed(start + i) for i in range(count)]
            images = pipe(["A photo of a dog."] * count, num_inference_steps=steps, height=res, width=res,
                          generator=gens).images
            for i, im in enumerate(images):
                im.save(out / f"{start + i:06d}.jpg", quality=95)

    def ours():
        generate(make_config(num=n, outputdir=work / "ours", sd_model=str(models["sd"]), steps=steps,
                             resolution=res, batch_size=bs))

    bare(), ours()  # warm-up: file caches, lazy imports
    t_bare, t_ours = best_of(bare, 2), best_of(ours, 2)
    ratio = t_bare / t_ours
    yield row(f"1. end-to-end imaginarynet vs bare diffusers loop ({n} images, {res}px, {steps} steps, batch {bs})",
        f"{n / t_ours:.2f} vs {n / t_bare:.2f} img/s, ratio {ratio:.3f}", ">= 0.95", ratio >= 0.95)


# ------------------------------------------------------------------ 2. original design
@benchmark(2, quick=dict(n=8, steps=2, res=64, bs=8), full=dict(n=32, steps=2, res=64, bs=8))
def bench_original(models, work: Path, n: int, steps: int, res: int, bs: int) -> Iterator[Row]:
    import open_clip
    import torch
    from diffusers import AutoPipelineForText2Image
    from transformers import pipeline as hf_pipeline

    from imaginarynet.filters.clip import decide
    from imaginarynet.pipeline import run as generate

    labels = ["dog", "cat", "bird", "horse"]
    clip_ref = f"local-dir:{models['clip']}"

    def original():
        """One GPT-2 call per prompt, one image per SD call, CLIP loaded for every image."""
        gpt = hf_pipeline("text-generation", model=str(models["gpt2"]))
        sd = AutoPipelineForText2Image.from_pretrained(str(models["sd"]))
        sd.set_progress_bar_config(disable=True)
        for i in range(n):
            label = labels[i % len(labels)]
            prompt = gpt(f"A photo of a {label}", max_length=15, do_sample=True, num_return_sequences=1,
                         pad_token_id=gpt.tokenizer.eos_token_id)[0]["generated_text"]
            image = sd(prompt, num_inference_steps=steps, height=res, width=res,
                       generator=torch.Generator().manual_seed(i)).images[0]
            model, _, preprocess = open_clip.create_model_and_transforms(clip_ref)
            tok = open_clip.get_tokenizer(clip_ref)
            with torch.no_grad():
                img = model.encode_image(preprocess(image)[None])
                txt = model.encode_text(tok([f"a photo of a {x}" for x in labels]))
                img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
            decide((img @ txt.T)[0].numpy(), i % len(labels), 0.0, labels)
            image.save(work / f"orig_{i:06d}.jpg", quality=95)

    def ours():  # the same number of attempts: one attempt per image, no refill
        generate(make_config(num=n, outputdir=work / "ours-gc", sd_model=str(models["sd"]), steps=steps,
                             resolution=res, batch_size=bs, gpt=True, gpt_model=str(models["gpt2"]), clip=True,
                             clip_pretrained=clip_ref, threshold=0.0, max_attempts=n // len(labels)))

    t_orig, t_ours = best_of(original, 1), best_of(ours, 1)
    speedup = t_orig / t_ours
    yield row(f"2. --gpt --clip vs the original design ({n} attempts)",
        f"{n / t_ours:.2f} vs {n / t_orig:.2f} attempts/s, {speedup:.1f}x", ">= 5x", speedup >= 5)


# ------------------------------------------------------------------ 3. CLIP filter throughput
@benchmark(3, quick=dict(n=32, bs=32), full=dict(n=256, bs=32))
def bench_clip(models, n: int, bs: int) -> Iterator[Row]:
    import torch

    from imaginarynet.filters import Candidate, create_filter

    cfg = make_config(num=4, outputdir=Path(tempfile.mkdtemp()), clip=True,
                      clip_pretrained=f"local-dir:{models['clip']}", sd_model=str(models["sd"]), device="cpu")
    flt = create_filter(cfg)
    flt.load()
    batches = random_batches(n, bs, 256)

    def raw():
        with torch.inference_mode():
            for b in batches:
                flt.model.encode_image(torch.stack([flt.preprocess(im) for im in b]))

    def ours():
        for b in batches:
            flt.score([Candidate(im, 0, "dog", 0, "p") for im in b])

    yield throughput_row(f"3. CLIP filter vs raw open_clip encode_image ({n} images, batch {bs})", n, ours, raw)


# ------------------------------------------------------------------ 4. GPT-2 batched
@benchmark(4, quick=dict(n=32), full=dict(n=128))
def bench_gpt(models, n: int) -> Iterator[Row]:
    import torch

    from imaginarynet.prompts import create_prompt_source

    cfg = make_config(num=4, outputdir=Path(tempfile.mkdtemp()), gpt=True, gpt_model=str(models["gpt2"]),
                      sd_model=str(models["sd"]), device="cpu")
    state = Path(tempfile.mkdtemp())

    def ours():
        exp = create_prompt_source(cfg, state / str(time.perf_counter()))  # a fresh cache every time
        exp.load()
        exp.prompts(cfg.classes[0], list(range(n)))

    exp = create_prompt_source(cfg, state / "x")
    exp.load()
    model, tok = exp.model, exp.tokenizer
    ids = tok("A photo of a dog", return_tensors="pt").input_ids

    def per_prompt():
        for i in range(n):
            torch.manual_seed(i)
            model.generate(ids, do_sample=True, top_k=50, max_length=15, pad_token_id=tok.eos_token_id)

    ours(), per_prompt()
    t_ours, t_one = best_of(ours, 2), best_of(per_prompt, 2)
    speedup = t_one / t_ours
    yield row(f"4. GPT-2 prompts, batched blocks vs one call per prompt ({n} prompts)",
        f"{n / t_ours:.0f} vs {n / t_one:.0f} prompts/s, {speedup:.1f}x", ">= 5x", speedup >= 5)


# ------------------------------------------------------------------ 12. GPT-2 scene prompts
@benchmark(12, quick=dict(n=32), full=dict(n=128))
def bench_gpt_scenes(models, n: int) -> Iterator[Row]:
    """Scenes give every attempt its own prefix: a block of 16 is one left-padded batch per token, against
    one generate call per prompt."""
    import torch

    from imaginarynet.prompts import create_prompt_source
    from imaginarynet.scenes import scene_names

    cfg = make_config(num=4, outputdir=Path(tempfile.mkdtemp()), gpt=True, gpt_model=str(models["gpt2"]),
                      sd_model=str(models["sd"]), device="cpu", objects_per_image="2-3", template=None)
    state = Path(tempfile.mkdtemp())
    exp = create_prompt_source(cfg, state / "x")
    exp.load()
    model, tok = exp.model, exp.tokenizer
    prefixes = [exp.prefix(scene_names(cfg, cfg.classes[0], k)) for k in range(n)]

    def ours():
        fresh = create_prompt_source(cfg, state / str(time.perf_counter()))  # a fresh cache every time
        fresh.model, fresh.tokenizer, fresh._torch, fresh.device, fresh._cache_arg = (
            model, tok, torch, exp.device, exp._cache_arg)
        fresh.prompts(cfg.classes[0], list(range(n)))

    def per_prompt():
        for i, prefix in enumerate(prefixes):
            torch.manual_seed(i)
            model.generate(tok(prefix, return_tensors="pt").input_ids, do_sample=True, top_k=50,
                           max_length=cfg.gpt_max_tokens, pad_token_id=tok.eos_token_id)

    ours(), per_prompt()
    t_ours, t_one = best_of(ours, 2), best_of(per_prompt, 2)
    yield row(f"12. GPT-2 scene prompts (2-3 classes), padded blocks vs one call per prompt ({n} prompts)",
        f"{n / t_ours:.0f} vs {n / t_one:.0f} prompts/s, {t_one / t_ours:.1f}x", "-", None)


# ------------------------------------------------------------------ 5. finished re-run, 6. memory
def cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "imaginarynet", *map(str, args)]


def peak_rss_mb(cmd: list[str]) -> float:
    code = ("import resource, subprocess, sys\n"
            f"subprocess.run({cmd!r}, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


@benchmark(5, quick=dict(n=20), full=dict(n=40))  # rows 5 and 6
def bench_rerun_and_memory(models, work: Path, n: int) -> Iterator[Row]:
    classes = work / "classes.txt"
    classes.write_text("dog\ncat\nbird\nhorse\n")
    base = ["--classfile", classes, "--sd-model", models["sd"], "--steps", 2, "--resolution", 64, "--quiet",
            "--no-report", "--batch-size", 8]
    out = work / "rerun"
    subprocess.run(cli(base + ["--num", 8, "--outputdir", out]), check=True)
    t = best_of(lambda: subprocess.run(cli(base + ["--num", 8, "--outputdir", out]), check=True), 3)
    yield row("5. re-running a finished run (fresh process, no model loaded)", f"{t:.2f} s", "< 1 s", t < 1.0)
    small = peak_rss_mb(cli(base + ["--num", n, "--outputdir", work / "mem-small"]))
    large = peak_rss_mb(cli(base + ["--num", 10 * n, "--outputdir", work / "mem-large"]))
    growth = large / small - 1
    yield row(f"6. peak RSS, --num {n} vs --num {10 * n}", f"{small:.0f} MB vs {large:.0f} MB (+{growth:.1%})",
        "< +10%", growth < 0.10)


# ------------------------------------------------------------------ 8. workers
@benchmark(8, quick=dict(n=16), full=dict(n=96))
def bench_workers(models, work: Path, n: int) -> Iterator[Row]:
    import json

    classes = work / "classes8.txt"
    classes.write_text("dog\ncat\nbird\nhorse\n")
    base = ["--classfile", classes, "--sd-model", models["sd"], "--steps", 8, "--resolution", 64, "--quiet",
            "--no-report", "--batch-size", 4, "--num", n]
    times, split = {}, None
    for workers in (1, 2):
        out = work / f"workers-{workers}"
        t = time.perf_counter()
        subprocess.run(cli(base + ["--outputdir", out, "--workers", workers]), check=True)
        times[workers] = time.perf_counter() - t
        if workers == 2:
            split = json.loads((out / "run.json").read_text())["models"]["workers"]["attempts_per_worker"]
    even = max(split) - min(split) <= 4  # within one block (--batch-size 4)
    yield row(f"8a. attempts per worker, --workers 2 ({n} images, block 4)", f"{split}", "within one block", even)
    yield row(f"8b. --workers 2 vs --workers 1 on {os.cpu_count()} CPU cores ({n} images, end to end)",
        f"{n / times[2]:.2f} vs {n / times[1]:.2f} img/s, {times[1] / times[2]:.2f}x", "-", None)


# ------------------------------------------------------------------ 7. DALL·E mini decoder
@benchmark(7)
def bench_dalle(fixtures: Path) -> Iterator[Row]:
    import jax
    import numpy as np
    from tiny_models import dalle_generate_uncached

    from imaginarynet.backends.dalle_mini import dallebart as db
    from imaginarynet.backends.dalle_mini.loading import config_from, load_params
    from imaginarynet.backends.dalle_mini.shapes import count, dallebart_shapes

    folder = fixtures / "dalle_mini" / "dallebart"
    if not folder.exists():
        yield row("7. DALL·E mini cached decoder", "skipped: fixtures not found", "-", None)
        return
    params, cfg = load_params(folder), config_from(db.DalleBartConfig, folder)
    batch = 8
    ids = np.tile(np.array([[0, 346, 350, 262, 2] + [1] * 11], np.int32), (batch, 1))
    mask = (ids != 1).astype(np.int32)
    greedy = db.Sampling(do_sample=False)
    jax.block_until_ready(db.generate(params, cfg, ids, mask, sampling=greedy))  # compile once
    jax.block_until_ready(dalle_generate_uncached(params, cfg, ids, mask))  # compile every prefix length
    t_cached = best_of(lambda: jax.block_until_ready(db.generate(params, cfg, ids, mask, sampling=greedy)), 5)
    t_full = best_of(lambda: jax.block_until_ready(dalle_generate_uncached(params, cfg, ids, mask)), 3)
    tokens = batch * cfg.image_length
    yield row(f"7a. DALL·E decoder, KV cache vs full recompute (tiny, batch {batch}, CPU)",
        f"{tokens / t_cached:.0f} vs {tokens / t_full:.0f} tokens/s, {t_full / t_cached:.1f}x", "-", None)

    def memory(c, param_bytes, act_bytes, guided=True):
        params_b = count(dallebart_shapes(c)) * param_bytes
        heads_dim = c.d_model
        kv = 2 * c.decoder_layers * batch * c.image_length * heads_dim * act_bytes * (2 if guided else 1)
        cross = 2 * c.decoder_layers * batch * c.max_text_length * heads_dim * act_bytes * (2 if guided else 1)
        return params_b, kv + cross

    mega = db.DalleBartConfig(
        d_model=2048, encoder_layers=24, decoder_layers=24, encoder_attention_heads=32, decoder_attention_heads=32,
        encoder_ffn_dim=4096, decoder_ffn_dim=4096, encoder_vocab_size=50272, image_vocab_size=16415,
        image_length=256, max_text_length=64, decoder_start_token_id=16384, eos_token_id=16385)
    for name, c, nbytes in (("tiny fp32", cfg, 4), ("mega fp16 (computed)", mega, 2)):
        p, kv = memory(c, nbytes, nbytes)
        yield row(f"7b. DALL·E memory, batch {batch} with super-conditioning, {name}",
            f"params {p / 2**20:.1f} MiB, KV caches {kv / 2**20:.1f} MiB", "-", None)


# ------------------------------------------------------------------ 9. detector
@benchmark(9, quick=dict(n=32, bs=16), full=dict(n=128, bs=16))
def bench_detector(models, n: int, bs: int) -> Iterator[Row]:
    """OWLv2 boxes inside ImaginaryNet (queries encoded once, post-processing, NMS, box dicts) vs a bare
    transformers loop (processor + forward + post-processing per batch) on the same images."""
    import torch
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    from imaginarynet.classes import ImageClass
    from imaginarynet.config import RunConfig
    from imaginarynet.detectors import create_detector
    from imaginarynet.filters import Candidate

    labels = ["dog", "cat", "bird", "horse"]
    cfg = RunConfig(classfile="x", classes=[ImageClass(x, x) for x in labels], outputdir=Path(tempfile.mkdtemp()),
                    detector=str(models["owlv2"]), box_threshold=0.1, device="cpu")
    det = create_detector(cfg)
    det.load()
    batches = random_batches(n, bs, 64)
    processor = AutoProcessor.from_pretrained(str(models["owlv2"]))
    model = AutoModelForZeroShotObjectDetection.from_pretrained(str(models["owlv2"])).eval()
    queries = [f"a photo of a {x}" for x in labels]

    def bare():
        for b in batches:
            with torch.inference_mode():
                out = model(**processor(text=[queries] * len(b), images=b, return_tensors="pt"))
            processor.post_process_grounded_object_detection(out, threshold=0.1, target_sizes=[(64, 64)] * len(b))

    def ours():
        for b in batches:
            det.detect([Candidate(im, 0, "dog", 0, "") for im in b])

    yield throughput_row(f"9. OWLv2 detector vs bare transformers loop ({n} images, batch {bs}, tiny model)", n, ours,
                   bare)


# ------------------------------------------------------------------ 10. LLM captions
@benchmark(10, quick=dict(n=32), full=dict(n=128))
def bench_llm(n: int) -> Iterator[Row]:
    """--llm samples captions in blocks of 16 (one generate call per block) vs one generate call per
    caption, same tiny chat model, same instruction and length; raw samples before cleaning."""
    import torch
    from tiny_models import build_tiny_chat_lm

    from imaginarynet.classes import ImageClass
    from imaginarynet.config import RunConfig
    from imaginarynet.prompts import create_prompt_source, llm

    model_dir = build_tiny_chat_lm(Path(tempfile.mkdtemp()) / "chat")
    cfg = RunConfig(classfile="x", classes=[ImageClass("dog", "dog")], outputdir=Path(tempfile.mkdtemp()),
                    llm=str(model_dir), device="cpu", llm_max_tokens=24)
    source = create_prompt_source(cfg, Path(tempfile.mkdtemp()))
    source.load()
    llm.clean_caption = lambda text, name: text  # count raw samples: cleaning is the same on both sides
    blocks = max(1, n // llm.BLOCK)
    tok, model = source.tokenizer, source.model
    text = tok.apply_chat_template([{"role": "user", "content": source.instruction([cfg.classes[0].name])}],
                                   add_generation_prompt=True, tokenize=False)
    enc = tok(text, return_tensors="pt", add_special_tokens=False)

    def ours():
        for b in range(blocks):
            source.sample_block(cfg.classes[0], b)

    def per_caption():
        for i in range(blocks * llm.BLOCK):
            torch.manual_seed(i)
            with torch.inference_mode():
                model.generate(**enc, do_sample=True, top_k=50, max_new_tokens=24, pad_token_id=tok.pad_token_id)

    ours(), per_caption()
    t_ours, t_one = best_of(ours, 2), best_of(per_caption, 2)
    total = blocks * llm.BLOCK
    ratio = t_one / t_ours
    yield row(f"10. --llm captions, blocks of {llm.BLOCK} vs one generate call per caption ({total} samples)",
        f"{total / t_ours:.0f} vs {total / t_one:.0f} samples/s, {ratio:.1f}x", ">= 5x", ratio >= 5)


# ------------------------------------------------------------------ 11. dedup cost
@benchmark(11, quick=dict(n=32, bs=32), full=dict(n=256, bs=32))
def bench_dedup(models, n: int, bs: int) -> Iterator[Row]:
    """--dedup's extra work per image (a CLIP image embedding, stored) relative to CLIP scoring."""

    from imaginarynet.classes import ImageClass
    from imaginarynet.config import RunConfig
    from imaginarynet.dedup import DedupJudge, write_embedding
    from imaginarynet.filters import Candidate, create_filter
    from imaginarynet.outdir import OutputDir

    out = OutputDir(Path(tempfile.mkdtemp()))
    cfg = RunConfig(classfile="x", classes=[ImageClass(x, x) for x in ("dog", "cat", "bird", "horse")],
                    outputdir=out.root, clip=True, clip_pretrained=f"local-dir:{models['clip']}", device="cpu",
                    dedup=0.95)
    flt = create_filter(cfg)
    flt.load()
    batches = [[Candidate(im, 0, "dog", i * bs + j, "p") for j, im in enumerate(b)]
               for i, b in enumerate(random_batches(n, bs, 256))]

    def score():
        for b in batches:
            flt.score(b)

    def judge(b, vectors, judge_):
        for c, v in zip(b, vectors):
            write_embedding(out, "dog", c.k, v)
            judge_.accept("dog", c.k)

    def clip_and_dedup():  # --clip --dedup: score, then store and judge the embeddings CLIP scored with
        judge_ = DedupJudge(out, 0.95)
        for b in batches:
            flt.score(b)
            judge(b, flt.embed(b), judge_)

    def tower_again():  # what --clip --dedup did before: the image tower a second time for the embeddings
        judge_ = DedupJudge(out, 0.95)
        for b in batches:
            flt.score(b)
            flt._scored = ((), None)
            judge(b, flt.embed(b), judge_)

    def store_and_judge():  # the rest of --dedup: an fsync'd .npy per image, the judge's comparisons
        judge_ = DedupJudge(out, 0.95)
        for b, vectors in zip(batches, cached):
            judge(b, vectors, judge_)

    score()
    cached = [flt.score(b) and flt.embed(b) for b in batches]
    clip_and_dedup(), tower_again(), store_and_judge()
    t_score, t_both, t_again, t_store = (best_of(f, 3) for f in (score, clip_and_dedup, tower_again, store_and_judge))
    ms = [t / n * 1000 for t in (t_both, t_again, t_score, t_store)]
    yield row(f"11. --clip --dedup, embedding shared vs image tower again ({n} images, batch {bs})",
        f"{ms[0]:.2f} vs {ms[1]:.2f} ms/img, {t_again / t_both:.2f}x (--clip alone {ms[2]:.2f}, "
        f"store + judge {ms[3]:.2f})", "-", None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test of the benchmarks)")
    ap.add_argument("--write", type=Path, help="write the table to this markdown file")
    ap.add_argument("--only", nargs="*", type=int, help="run only these benchmark numbers")
    args = ap.parse_args()
    from tiny_models import build_tiny_models

    models = build_tiny_models()
    fixtures = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
    want = set(args.only or BENCHMARKS) | ({5} if 6 in (args.only or ()) else set())
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        context = {"models": models, "work": Path(tmp), "fixtures": fixtures}
        for number in sorted(want & set(BENCHMARKS)):
            fn, quick, full = BENCHMARKS[number]
            needs = {name: context[name] for name in inspect.signature(fn).parameters if name in context}
            rows += fn(**needs, **(quick if args.quick else full))
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}")
    table = ["| benchmark | measured | target | |", "|---|---|---|---|"] + [
        f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    print("\n" + "\n".join(table))
    if args.write:
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
        header = (f"# Benchmark results\n\nMachine: {machine}; device: {device}; "
                  f"{time.strftime('%Y-%m-%d')}. Command: `python benchmarks/run.py`"
                  f"{' --quick' if args.quick else ''}.\n\n")
        args.write.write_text(header + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
