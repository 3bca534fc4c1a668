"""Documented generate options, one test each, on the tiny models.

Every expected value is worked out here from the inputs (class file, options, weights built
here) or from the libraries users run downstream (diffusers, open_clip, PIL, transformers),
never read back from the product; each test says which wrong product it catches.
"""
import inspect
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from helpers import read_jsonl, run_cli, run_main, write_classfile
from PIL import Image

SNOW = "A {name} in the snow"
# what SNOW makes of the class file below: the display name, not the label
SNOW_PROMPTS = {"dog": "A dog in the snow", "diningtable": "A dining table in the snow"}


# The 2 CPU cores these tests get may be shared with other work. The tiny models gain nothing from
# torch's intra-op threads and lose a lot to their spin-waits when a core is busy (10x seen), so
# this file's runs use one thread, in-process and in the CLI subprocesses (no option tested here
# depends on the thread count).
ONE_THREAD_ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("options")


@pytest.fixture(scope="module")
def classes(workdir):
    path = workdir / "classes.txt"
    path.write_text("dog\ndiningtable: dining table\n")
    return path


@pytest.fixture(scope="module")
def one_class(workdir):
    return write_classfile(workdir / "one.txt", ["dog"])


def clip_args(tiny):
    return ["--clip", "--clip-pretrained", f"local-dir:{tiny['clip']}"]


def run_json(out):
    return json.loads((out / "run.json").read_text())


def pixels(out) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p).convert("RGB"), dtype=np.int16)
            for p in sorted((out / "VOC2007" / "JPEGImages").glob("*.jpg"))}


@contextmanager
def pipeline_calls():
    """Record what every StableDiffusionPipeline call receives (and the pipeline's state at that
    moment), then run the real call. The tiny SD model is a StableDiffusionPipeline."""
    import diffusers

    original = diffusers.StableDiffusionPipeline.__call__
    signature = inspect.signature(original)
    calls = []

    def recording(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs).arguments
        calls.append({"prompt": list(bound.get("prompt") or []), "negative_prompt": bound.get("negative_prompt"),
                      "scheduler": type(self.scheduler).__name__, "scheduler_config": dict(self.scheduler.config),
                      "unet_dtype": self.unet.dtype})
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(diffusers.StableDiffusionPipeline, "__call__", recording)
        yield calls


# ---------------------------------------------------------------------------------------------
# Two real CLI runs (fresh processes): one as the README types it (defaults only), one with --quiet
# --no-report --template.

@pytest.fixture(scope="module")
def loud(tiny_sd_args, classes, workdir):
    out = workdir / "loud"
    res = run_cli(["--num", 4, "--classfile", classes, "--outputdir", out, *tiny_sd_args], env=ONE_THREAD_ENV)
    assert res.returncode == 0, res.stderr
    return out, res


@pytest.fixture(scope="module")
def quiet(tiny_sd_args, classes, workdir):
    out = workdir / "quiet"
    res = run_cli(["--num", 4, "--classfile", classes, "--outputdir", out, "--batch-size", 2, "--quiet",
                   "--no-report", "--template", SNOW, *tiny_sd_args], env=ONE_THREAD_ENV)
    assert res.returncode == 0, res.stderr
    return out, res


def table_header_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if all(w in line for w in ("class", "kept", "attempts"))]


def has_progress_bar(stderr: str) -> bool:
    return any(s in stderr for s in ("it/s", "img/s", "%|", "s/it", "s/img"))


def test_quiet_prints_no_progress_bar_and_no_summary_table(loud, quiet):
    """Catches a --quiet that is ignored by the progress bar (tqdm not disabled), by the summary
    table, or by a library's own loading bars. The plain run shows both, so the check can fail."""
    _, loud_res = loud
    _, quiet_res = quiet
    assert table_header_lines(loud_res.stderr) and has_progress_bar(loud_res.stderr), loud_res.stderr
    assert not table_header_lines(quiet_res.stderr), quiet_res.stderr
    assert not has_progress_bar(quiet_res.stderr), quiet_res.stderr


def test_no_report_writes_no_report_folder(loud, quiet):
    """Catches a --no-report that still writes OUT/report/ (or a report that is never written)."""
    assert (loud[0] / "report" / "index.html").is_file()
    assert not (quiet[0] / "report").exists()


def test_template_formats_the_display_name_into_every_prompt(quiet):
    """Catches a product that ignores --template (default prompt), formats the label instead of the
    display name ("A diningtable in the snow"), or appends/keeps a full stop."""
    out, _ = quiet
    meta = read_jsonl(out / "metadata.jsonl")
    assert [(m["class"], m["prompt"]) for m in meta] == [
        ("dog", "A dog in the snow"), ("dog", "A dog in the snow"),
        ("diningtable", "A dining table in the snow"), ("diningtable", "A dining table in the snow")]
    for label, prompt in SNOW_PROMPTS.items():  # every prompt used, in attempt order (2 attempts each)
        assert (out / "prompts" / f"{label}.txt").read_text() == f"{prompt}\n" * 2


def test_jpeg_quality_95(loud):
    """Every JPEG has the quantization tables PIL writes at quality=95: catches another quality
    (PIL's default 75, 90, 100, ...). Oracle: PIL encoding an unrelated image at quality 95."""
    import io

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8), "RGB").save(buf, "JPEG", quality=95)
    expected = Image.open(io.BytesIO(buf.getvalue())).quantization
    buf75 = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf75, "JPEG")
    assert Image.open(io.BytesIO(buf75.getvalue())).quantization != expected  # the oracle tells qualities apart
    jpgs = sorted((loud[0] / "VOC2007" / "JPEGImages").glob("*.jpg"))
    assert len(jpgs) == 4
    for p in jpgs:
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.quantization == expected, p.name


# ---------------------------------------------------------------------------------------------
# In-process runs with the pipeline call recorded.

@pytest.fixture(scope="module")
def negative_runs(tiny_sd_args, classes, workdir):
    base = ["--num", 4, "--classfile", classes, "--batch-size", 2, "--guidance", 7.5, "--template", SNOW,
            "--quiet", "--no-report", *tiny_sd_args]
    runs = {}
    for name, extra in (("plain", []), ("negative", ["--negative-prompt", "blurry, low quality"])):
        out = workdir / f"neg-{name}"
        with pipeline_calls() as calls:
            assert run_main([*base, "--outputdir", out, *extra]) == 0
        runs[name] = (out, calls)
    return runs


def test_template_prompts_reach_the_pipeline(negative_runs):
    """Catches a product that writes the templated prompt to metadata but generates from another one."""
    _, calls = negative_runs["plain"]
    sent = sorted(p for c in calls for p in c["prompt"])
    assert sent == sorted([SNOW_PROMPTS["dog"]] * 2 + [SNOW_PROMPTS["diningtable"]] * 2)


def test_negative_prompt_reaches_every_pipeline_call(negative_runs):
    """Catches a --negative-prompt that is dropped, sent as a bare string where diffusers wants one per
    prompt, sent for only part of a batch, or not used at all (then the images would be equal)."""
    out, calls = negative_runs["negative"]
    assert calls and sum(len(c["prompt"]) for c in calls) == 4
    for c in calls:
        assert c["negative_prompt"] == ["blurry, low quality"] * len(c["prompt"])
    with_neg, without = pixels(out), pixels(negative_runs["plain"][0])
    assert sorted(with_neg) == sorted(without) and len(with_neg) == 4
    for name in with_neg:  # same prompt and seed, guidance 7.5: only the negative prompt differs
        assert not np.array_equal(with_neg[name], without[name]), name


# Written from diffusers' class names, not from the product's table.
EXPECTED_SCHEDULERS = {
    "pndm": "PNDMScheduler",
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
}


def test_each_scheduler_choice_builds_the_named_diffusers_scheduler(tiny, tiny_sd_args, one_class, workdir):
    """Catches a choice mapped to the wrong class (e.g. dpm++ -> DPMSolverSinglestepScheduler), a
    --scheduler that is ignored (the model's own PNDM), a choice list out of step with the backend's
    table, and a swap that drops the model's noise schedule (the new scheduler must keep the
    model's beta_start/beta_end/beta_schedule, read here from the model's own scheduler_config.json).
    pndm is also the tiny model's own scheduler, so an ignored --scheduler is caught by the other four."""
    import diffusers

    from imaginarynet.backends.options import SCHEDULERS
    from imaginarynet.backends.stable_diffusion import SCHEDULER_CLASSES

    assert set(SCHEDULERS) == set(SCHEDULER_CLASSES) == set(EXPECTED_SCHEDULERS)
    model_cfg = json.loads((tiny["sd"] / "scheduler" / "scheduler_config.json").read_text())
    assert model_cfg["_class_name"] == "PNDMScheduler"
    for choice in SCHEDULERS:
        expected = EXPECTED_SCHEDULERS[choice]
        assert issubclass(getattr(diffusers, expected), diffusers.SchedulerMixin)
        out = workdir / f"sched-{choice.replace('+', 'p')}"
        with pipeline_calls() as calls:
            assert run_main(["--num", 1, "--classfile", one_class, "--outputdir", out, "--scheduler", choice,
                             "--quiet", "--no-report", *tiny_sd_args]) == 0
        assert run_json(out)["models"]["generator"]["scheduler"] == expected, choice
        assert calls and all(c["scheduler"] == expected for c in calls), choice
        for key in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps"):
            assert calls[0]["scheduler_config"][key] == model_cfg[key], (choice, key)


def test_dtype_choices(tiny_sd_args, one_class, workdir):
    """README: auto = fp16 on CUDA, fp32 on CPU; fp32/fp16/bf16 as named. Checks what the denoiser
    really runs in (recorded at the pipeline call) and what run.json says. Catches fp16/bf16 silently
    ignored, auto picking fp16 on the CPU, and run.json reporting a dtype the model does not use.
    The CUDA half of `auto` is the product's decision function (no GPU needed to call it). README and
    code agree: an explicit fp16/bf16 is honoured on the CPU too (it runs, slowly)."""
    import torch

    from imaginarynet.backends.stable_diffusion import torch_dtype
    from imaginarynet.config import DTYPES

    expected = {"auto": torch.float32, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    assert set(DTYPES) == set(expected)
    for choice in DTYPES:
        out = workdir / f"dtype-{choice}"
        with pipeline_calls() as calls:
            assert run_main(["--num", 1, "--classfile", one_class, "--outputdir", out, "--dtype", choice,
                             "--device", "cpu", "--quiet", "--no-report", *tiny_sd_args]) == 0
        assert calls and all(c["unet_dtype"] == expected[choice] for c in calls), choice
        assert run_json(out)["models"]["generator"]["dtype"] == str(expected[choice]).removeprefix("torch."), choice
    assert torch_dtype("auto", "cuda:1") == torch.float16 and torch_dtype("auto", "cuda") == torch.float16


# ---------------------------------------------------------------------------------------------
# --cpu: the verifiers move, the generator stays.

class DeviceEcho:
    """A backend that only reports the device it was given (run.json models.generator.device) and
    makes flat images; it never touches the device, so --device cuda:0 runs without a GPU."""

    def __init__(self, options, backend_options, runtime):
        self.size, self.device = options.resolution, runtime.device

    def load(self) -> None:
        pass

    def generate(self, requests):
        from imaginarynet.backends.base import Generated

        return [Generated(Image.new("RGB", (self.size,) * 2, (r.seed % 256, 90, 160))) for r in requests]

    def describe(self) -> dict:
        return {"backend": "device-echo", "device": self.device}


def test_cpu_moves_the_clip_filter_not_the_generator(tiny, classes, workdir, monkeypatch):
    """`--device cuda:0 --cpu`: the generator is handed cuda:0 and the real CLIP filter loads and runs on
    the CPU. No GPU is needed: the generator is DeviceEcho, and torch is told one CUDA device exists so
    that --device cuda:0 passes validation. Catches --cpu ignored (CLIP would load on cuda:0 and fail
    here, or report cuda:0) and --cpu moving the generator too (it would be handed cpu)."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    out = workdir / "cpu-flag"
    assert run_main(["--num", 2, "--classfile", classes, "--outputdir", out, "--backend", "test_options:DeviceEcho",
                     "--resolution", 64, "--device", "cuda:0", "--cpu", "--threshold", 0.0, "--max-attempts", 2,
                     "--quiet", "--no-report", *clip_args(tiny)]) == 0
    models = run_json(out)["models"]
    assert models["generator"] == {"backend": "device-echo", "device": "cuda:0"}
    assert models["filter"]["device"] == "cpu"
    assert read_jsonl(out / ".state" / "ledger.jsonl")  # the filter did score images on the CPU


class _Stop(Exception):
    pass


@pytest.mark.parametrize("cpu, expected", [(True, "cpu"), (False, "cuda:0")])
def test_clip_filter_device_decision(cpu, expected, tmp_path, monkeypatch):
    """The filter's device with --device cuda:0, decided without a GPU: open_clip's loader is replaced
    by one that records the device and stops. Catches --cpu ignored, and --cpu applied when not given."""
    from imaginarynet.classes import ImageClass
    from imaginarynet.config import RunConfig
    from imaginarynet.filters import clip as clip_module
    from imaginarynet.filters import create_filter

    seen = []

    def fake_load(open_clip, model, pretrained, device):
        seen.append(device)
        raise _Stop

    monkeypatch.setattr(clip_module, "load_open_clip", fake_load)
    cfg = RunConfig(classfile="x", classes=[ImageClass("dog", "dog")], outputdir=tmp_path, clip=True,
                    device="cuda:0", cpu=cpu)
    with pytest.raises(_Stop):
        create_filter(cfg).load()
    assert seen == [expected]


@pytest.mark.parametrize("cpu", [True, False])
def test_every_stage_is_built_for_its_device(cpu, tiny, tmp_path):
    """--device cuda:0 with and without --cpu, every stage built (not loaded, no GPU needed): the generator
    and the prompt model stay on cuda:0; the filter, detector, segmenter and --dedup embedder move to the CPU
    only with --cpu. Catches a stage that reads the run's device itself and ignores --cpu, or applies it."""
    from imaginarynet.classes import ImageClass
    from imaginarynet.config import RunConfig
    from imaginarynet.outdir import OutputDir
    from imaginarynet.work import StageSet

    cfg = RunConfig(classfile="x", classes=[ImageClass("dog", "dog")], outputdir=tmp_path, device="cuda:0", cpu=cpu,
                    detector=str(tiny["owlv2"]), segmenter=str(tiny["sam"]), dedup=0.9, gpt=True,
                    gpt_model=str(tiny["gpt2"]), sd_model=str(tiny["sd"]))
    stages = StageSet(cfg, OutputDir(tmp_path))
    verifier = "cpu" if cpu else "cuda:0"
    assert stages.backend.device == "cuda:0" and stages.prompts.runtime.device == "cuda:0"
    assert stages.embedder.device == stages.detector.device == stages.segmenter.requested_device == verifier


# ---------------------------------------------------------------------------------------------
# GPT-2 prompt length.

def test_larger_gpt_max_tokens_gives_longer_prompts(tiny, tiny_sd_args, classes, workdir):
    """Catches a --gpt-max-tokens that is ignored (both runs would use the default 15 and be equally
    long), and one that bounds the sampled tokens but not the prompt: lengths are counted with the
    model's own tokenizer (transformers.AutoTokenizer) on the prompt as written. A byte-level token
    that is not a whole UTF-8 character decodes to U+FFFD, 3 tokens when tokenized again (with N=9 the
    tiny model once gave 'A photo of a dogG\ufffd\ufffd', 12 tokens)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny["gpt2"]))
    longest = {}
    for n in (9, 12):
        out = workdir / f"gpt-{n}"
        assert run_main(["--per-class", 3, "--classfile", classes, "--outputdir", out, "--gpt", "--gpt-model",
                         tiny["gpt2"], "--gpt-max-tokens", n, "--quiet", "--no-report", *tiny_sd_args]) == 0
        prompts = [p for label in SNOW_PROMPTS for p in (out / "prompts" / f"{label}.txt").read_text().splitlines()]
        assert len(prompts) == 6
        assert run_json(out)["models"]["prompts"]["max_tokens"] == n
        longest[n] = max(len(tok(p).input_ids) for p in prompts)
        assert longest[n] <= n and all(p.isprintable() and "\ufffd" not in p for p in prompts), prompts
    assert longest[12] > longest[9]


# ---------------------------------------------------------------------------------------------
# --clip-pretrained FILE.

CLIP_ARCH = "ViT-S-32-alt"  # the smallest built-in open_clip architecture without timm/HF towers
PLANTED_COS = 0.6


@pytest.fixture(scope="module")
def planted_clip_file(workdir):
    """Weights for a built-in architecture whose image features are all along e0 and whose text
    features are all along (0.6, 0.8, 0, ...): with these weights every cosine is exactly 0.6 and
    every class ties (probability 1/C), whatever the image and class name. A LayerNorm with weight 0
    outputs its bias, whatever its input."""
    import open_clip
    import torch

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in open_clip.CLIP(**open_clip.get_model_config(CLIP_ARCH)).state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=gen) * 0.02 for k, s in shapes.items()}
    sd["visual.ln_post.weight"] = torch.zeros(shapes["visual.ln_post.weight"])
    sd["visual.ln_post.bias"] = torch.ones(shapes["visual.ln_post.bias"])
    proj = torch.zeros(shapes["visual.proj"])
    proj[:, 0] = 1.0 / proj.shape[0]
    sd["visual.proj"] = proj
    sd["ln_final.weight"] = torch.zeros(shapes["ln_final.weight"])
    sd["ln_final.bias"] = torch.ones(shapes["ln_final.bias"])
    tproj = torch.zeros(shapes["text_projection"])
    tproj[:, 0], tproj[:, 1] = PLANTED_COS / tproj.shape[0], 0.8 / tproj.shape[0]
    sd["text_projection"] = tproj
    path = workdir / "planted_clip.pt"
    torch.save(sd, path)
    return path


def test_clip_pretrained_weights_file_is_loaded(planted_clip_file, tiny_sd_args, classes, workdir):
    """`--clip-model ViT-S-32-alt --clip-pretrained FILE` scores with FILE's weights: every recorded
    cosine is the planted 0.6 and every probability 1/2. Catches a weights file that is ignored
    (open_clip's random init gives other cosines) or loaded into the wrong towers."""
    out = workdir / "clip-file"
    assert run_main(["--per-class", 1, "--classfile", classes, "--outputdir", out, "--clip", "--clip-model",
                     CLIP_ARCH, "--clip-pretrained", planted_clip_file, "--threshold", 0.0, "--max-attempts", 2,
                     "--quiet", "--no-report", *tiny_sd_args]) == 0
    ledger = read_jsonl(out / ".state" / "ledger.jsonl")
    assert ledger
    for r in ledger:
        assert r["score"]["cos"] == pytest.approx(PLANTED_COS, abs=1e-5), r
        assert r["score"]["prob"] == pytest.approx(0.5, abs=1e-4), r
    assert run_json(out)["models"]["filter"]["pretrained"] == str(planted_clip_file)


def test_clip_pretrained_missing_file_is_one_line_exit_2(classes, tmp_path):
    """Catches a missing weights file that surfaces as a traceback, after models load, or without
    naming the path."""
    missing = tmp_path / "no" / "such" / "weights.pt"
    res = run_cli(["--num", 2, "--classfile", classes, "--outputdir", tmp_path / "out", "--clip", "--clip-model",
                   CLIP_ARCH, "--clip-pretrained", missing], timeout=60, env=ONE_THREAD_ENV)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0], res.stderr
    assert not (tmp_path / "out" / "run.json").exists()


# ---------------------------------------------------------------------------------------------
# The attempt cap and batch-size invariance with the CLIP filter.

def test_default_max_attempts_is_four_times_each_quota(tiny, tiny_sd_args, classes, workdir):
    """--num 5 over 2 classes: quotas 3 and 2 (earlier classes get the remainder), so with an
    unreachable threshold the default caps are 12 and 8. Catches a cap of another multiple, one
    computed from the total or from another class's quota, and a ledger that records more or fewer
    attempts than were counted."""
    out = workdir / "cap"
    assert run_main(["--num", 5, "--classfile", classes, "--outputdir", out, "--threshold", 1.0, "--batch-size", 4,
                     "--quiet", "--no-report", *tiny_sd_args, *clip_args(tiny)]) == 0
    expected = {"dog": 4 * 3, "diningtable": 4 * 2}
    run = run_json(out)
    assert {r["class"]: r["attempts"] for r in run["per_class"]} == expected
    ledger = read_jsonl(out / ".state" / "ledger.jsonl")
    assert all(r["status"] == "rejected" for r in ledger)  # nothing reaches 1.0: the cap stopped the run
    for label, n in expected.items():
        assert sorted(r["k"] for r in ledger if r["class"] == label) == list(range(n))
    assert {s["class"] for s in run["shortfalls"]} == set(expected)


def test_batch_size_does_not_change_the_dataset_with_clip(tiny, tiny_sd_args, workdir):
    """With CLIP rejecting some attempts (refills inside a class), --batch-size 1 and 4 keep the same
    attempts with the same ids, prompts (GPT-2, so they differ per attempt) and seeds, and judge every
    (class, k) the same. Catches batching that pairs a prompt or seed with the wrong attempt, scores an
    image against the wrong class, or issues other attempts. Threshold 0.58 is > 0.04 away from every
    probability these tiny models were seen to give here (dog: 0.63, 0.54, 0.73, 0.78; the others
    < 0.30), far above the float noise between batch sizes (~1e-4)."""
    classes = write_classfile(workdir / "three.txt", ["dog", "cat", "diningtable"])
    kept, statuses = {}, {}
    for bs in (1, 4):
        out = workdir / f"bs-clip-{bs}"
        assert run_main(["--per-class", 3, "--classfile", classes, "--outputdir", out, "--batch-size", bs,
                         "--threshold", 0.58, "--max-attempts", 6, "--gpt", "--gpt-model", tiny["gpt2"],
                         "--quiet", "--no-report", *tiny_sd_args, *clip_args(tiny)]) == 0
        kept[bs] = [(m["id"], m["class"], m["attempt"], m["prompt"], m["seed"])
                    for m in read_jsonl(out / "metadata.jsonl")]
        statuses[bs] = {(r["class"], r["k"]): r["status"] for r in read_jsonl(out / ".state" / "ledger.jsonl")}
    assert set(statuses[1].values()) == {"kept", "rejected"}
    dog = [statuses[1][("dog", k)] for k in range(6) if ("dog", k) in statuses[1]]
    assert "rejected" in dog and "kept" in dog  # a refill inside one class, not just whole classes lost
    assert kept[1] and kept[4] == kept[1]
    assert statuses[4] == statuses[1]


FINGERPRINTS = json.loads((Path(__file__).parent / "fixtures" / "fingerprints" / "v1.json").read_text())


@pytest.mark.parametrize("case", sorted(FINGERPRINTS["cases"]))
def test_fingerprint_of_every_stage_family_is_the_one_older_datasets_carry(case):
    """fixtures/fingerprints/v1.json was computed by the flat RunConfig of 7781e73 (make_v1.py): with the
    options now declared by each stage, an OUT made then of each kind (SD, DALL·E, plugin, GPT-2, LLM, CLIP,
    detector, dedup, scenes, annotate) still resumes instead of being refused."""
    from imaginarynet.classes import ImageClass
    from imaginarynet.config import RunConfig

    spec = FINGERPRINTS["cases"][case]
    cfg = RunConfig(classfile="voc.txt", classes=[ImageClass(*c) for c in FINGERPRINTS["classes"]],
                    outputdir=Path("/tmp/o"), **{**FINGERPRINTS["filled"], **spec["options"]})
    assert json.loads(json.dumps(cfg.data_options(), sort_keys=True, default=str)) == spec["data"]
    assert cfg.fingerprint() == spec["fingerprint"]
