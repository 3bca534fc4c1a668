"""RunConfig: every generate option, validated in one place before any model loads.

`data_options()` is the subset that changes the dataset; its hash is the run
fingerprint stored in run.json, so a re-run with other data options is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from imaginarynet.classes import ImageClass
from imaginarynet.errors import UserError
from imaginarynet.scenes import (
    SCENE_TEMPLATE,
    SINGLE_TEMPLATE,
    check_partners,
    load_cooccurrence,
    objects_spec,
    parse_objects,
)

# Choice lists: the CLI offers exactly these, the stages accept exactly these.
SCHEDULERS = ("pndm", "ddim", "dpm++", "euler", "euler-a")
DTYPES = ("auto", "fp32", "fp16", "bf16")
ENGINES = ("local", "ray")

# Options that never change what ends up in the dataset.
RUNTIME_OPTIONS = {"outputdir", "batch_size", "device", "cpu", "overwrite", "quiet", "strict",
                   "keep_rejected", "classfile", "log_json", "report", "dry_run", "compile", "cpu_offload",
                   "tf32", "workers", "devices", "engine", "ray_address", "shard", "finalize",
                   "cooccurrence_file"}


@dataclass
class RunConfig:
    classfile: str
    classes: list[ImageClass]
    outputdir: Path
    num: int | None = None
    per_class: int | None = None
    seed: int = 0
    backend: str = "stablediffusion"
    backend_options: dict = field(default_factory=dict)
    template: str | None = SINGLE_TEMPLATE  # None (the CLI's default): scenes.SCENE_TEMPLATE with several objects
    # Scenes: several classes per image (scenes.py)
    objects_per_image: str = "1"  # "N" or "MIN-MAX"
    cooccurrence: dict | None = None  # the --cooccurrence file's pair weights, read by validate()
    cooccurrence_file: str | None = None
    # Stable Diffusion
    sd_model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    steps: int | None = None  # None: the model family's default (sd_families.py)
    guidance: float | None = None
    resolution: int | None = None
    negative_prompt: str | None = None
    scheduler: str | None = None
    safety_checker: bool = True
    # DALL·E mini
    dalle_model: str = "dalle-mini/dalle-mega"
    vqgan_model: str = "dalle-mini/vqgan_imagenet_f16_16384"
    condition_scale: float = 10.0
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    # GPT-2 prompt expansion
    gpt: bool = False
    gpt_model: str = "gpt2-large"
    gpt_max_tokens: int = 15
    # Captions from an instruction-tuned chat model
    llm: str | None = None
    llm_instruction: str | None = None  # None: prompts/llm.py DEFAULT_INSTRUCTION
    llm_max_tokens: int = 40
    # CLIP filter
    clip: bool = False
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "openai"
    threshold: float = 0.6
    # Open-vocabulary detector (boxes)
    detector: str | None = None
    box_threshold: float | None = None  # None: the detector family's default (detectors/zero_shot.py)
    nms_iou: float = 0.5
    label_other_detections: bool = False
    source: str | None = None  # `annotate`: the folder of existing images
    max_attempts: int | None = None
    dedup: float | None = None  # reject an image this similar (CLIP cosine) to an earlier kept one
    keep_rejected: bool = False
    strict: bool = False
    # Runtime
    batch_size: int = 4
    dtype: str = "auto"
    device: str | None = None
    cpu: bool = False
    compile: bool = False
    cpu_offload: bool = False
    tf32: bool = False
    workers: int = 1
    devices: str | None = None
    engine: str = "local"
    ray_address: str | None = None
    shard: str | None = None
    finalize: bool = False
    overwrite: bool = False
    quiet: bool = False
    log_json: Path | None = None
    report: bool = True
    dry_run: bool = False
    quotas: list[int] = field(default_factory=list)
    family: dict = field(default_factory=dict)  # what the SD model's files said about its defaults

    def data_options(self) -> dict:
        opts = {k: v for k, v in asdict(self).items() if k not in RUNTIME_OPTIONS}
        opts["classes"] = [[c.label, c.name] for c in self.classes]
        opts.pop("num")  # quotas say it all (and --num vs --per-class may agree)
        opts.pop("per_class")
        opts.pop("family")
        if self.backend == "dalle-mini":  # plugins may use the generic diffusion options
            for k in ("sd_model", "steps", "guidance", "resolution", "negative_prompt", "scheduler",
                      "safety_checker"):
                opts.pop(k)
        if self.backend != "dalle-mini":
            for k in ("dalle_model", "vqgan_model", "condition_scale", "top_k", "top_p", "temperature"):
                opts.pop(k)
        if not self.gpt:
            opts.pop("gpt_model"), opts.pop("gpt_max_tokens")
        if not self.clip:
            for k in ("clip_model", "clip_pretrained", "threshold"):
                opts.pop(k)
        if not self.detector:
            for k in ("detector", "box_threshold", "nms_iou", "label_other_detections"):
                opts.pop(k)
        if self.source is None:
            opts.pop("source")
        if not self.llm:
            for k in ("llm", "llm_instruction", "llm_max_tokens"):
                opts.pop(k)
        if self.object_range == (1, 1):  # one object per image: the options (and fingerprint) of before
            opts.pop("objects_per_image")
        if self.cooccurrence is None:
            opts.pop("cooccurrence")
        if self.dedup is None:
            opts.pop("dedup")
        elif not self.clip:  # the CLIP model embeds the images for --dedup
            opts.update(clip_model=self.clip_model, clip_pretrained=self.clip_pretrained)
        return opts

    @property
    def object_range(self) -> tuple[int, int]:
        return parse_objects(self.objects_per_image)

    @property
    def scenes(self) -> bool:
        """Whether attempts may prompt several classes (their records then list them)."""
        return self.object_range[1] > 1

    def fingerprint(self) -> str:
        blob = json.dumps(self.data_options(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def max_attempts_for(self, quota: int) -> int:
        """Attempt cap per class; only reached when the filter or safety checker rejects images."""
        return self.max_attempts if self.max_attempts is not None else 4 * quota

    def to_json(self) -> dict:
        d = asdict(self)
        d["outputdir"] = str(self.outputdir)
        d["log_json"] = str(self.log_json) if self.log_json else None
        d["classes"] = [[c.label, c.name] for c in self.classes]
        return d


# The one source of option defaults (the CLI shows these).
DEFAULTS = {f.name: f.default for f in fields(RunConfig) if f.default is not MISSING}
DEFAULTS.update(classfile="voc", outputdir="output")  # required in a RunConfig, defaulted on the command line


def check_model_ref(option: str, spec: str) -> None:
    """A hub id ('org/name', 'gpt2-large') or a local path; a path-looking spec must exist."""
    path = spec[len("local-dir:"):] if spec.startswith("local-dir:") else spec
    looks_local = (spec.startswith("local-dir:") or path.startswith((".", "/", "~"))
                   or path.count("/") > 1 or "\\" in path)
    if looks_local and not Path(path).expanduser().exists():
        raise UserError(f"{option}: model path does not exist: {path}")


def validate(cfg: RunConfig) -> RunConfig:
    n = len(cfg.classes)
    if cfg.num is not None and cfg.per_class is not None:
        raise UserError("give either --num or --per-class, not both")
    if cfg.per_class is not None:
        if cfg.per_class < 1:
            raise UserError(f"--per-class must be at least 1 (got {cfg.per_class})")
        cfg.quotas = [cfg.per_class] * n
    else:
        num = cfg.num if cfg.num is not None else 100 * n
        if num < 1:
            raise UserError(f"--num must be at least 1 (got {num})")
        if num < n:
            raise UserError(f"--num {num} is fewer images than classes ({n}); every class needs one")
        from imaginarynet.plan import split_quota

        cfg.num = num
        cfg.quotas = split_quota(num, n)
    from imaginarynet.backends.base import check_backend_options

    cfg.backend_options = check_backend_options(cfg)  # also: unknown backend, broken plugin
    if not 0.0 <= cfg.threshold <= 1.0:
        raise UserError(f"--threshold must be within [0, 1] (got {cfg.threshold})")
    if cfg.resolution is not None and (cfg.resolution < 8 or cfg.resolution % 8):
        raise UserError(f"--resolution must be a positive multiple of 8 (got {cfg.resolution})")
    if cfg.steps is not None and cfg.steps < 1:
        raise UserError(f"--steps must be at least 1 (got {cfg.steps})")
    if cfg.workers < 1:
        raise UserError(f"--workers must be at least 1 (got {cfg.workers})")
    if cfg.devices and cfg.workers > 1:
        raise UserError("give --devices (one worker per device) or --workers, not both")
    if cfg.shard:
        from imaginarynet.plan import parse_shard

        parse_shard(cfg.shard)
    if cfg.engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)} (got {cfg.engine!r})")
    if cfg.engine == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UserError("--engine ray needs the 'ray' package: pip install 'imaginarynet[ray]'")
    if cfg.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {cfg.batch_size})")
    if cfg.max_attempts is not None and cfg.max_attempts < 1:
        raise UserError(f"--max-attempts must be at least 1 (got {cfg.max_attempts})")
    if cfg.gpt_max_tokens < 1:
        raise UserError(f"--gpt-max-tokens must be at least 1 (got {cfg.gpt_max_tokens})")
    _check_scenes(cfg)
    _check_template(cfg.template)
    _check_sampling(cfg)
    if cfg.overwrite and cfg.shard:
        raise UserError("--overwrite cannot be combined with --shard (one slice would delete the others' work); "
                        "delete the folder first")
    from imaginarynet.runtime import check_device

    for spec in ([cfg.device] if cfg.device else []) + _device_list(cfg.devices):
        check_device(spec)
    if cfg.log_json and not cfg.dry_run:
        _check_log_file(cfg.log_json)
    if cfg.backend == "stablediffusion":
        check_model_ref("--sd-model", cfg.sd_model)
    else:
        check_model_ref("--dalle-model", cfg.dalle_model)
        check_model_ref("--vqgan-model", cfg.vqgan_model)
    if cfg.gpt:
        check_model_ref("--gpt-model", cfg.gpt_model)
    if cfg.llm:
        _check_llm(cfg)
    _check_scene_prompts(cfg)
    if cfg.detector:
        _check_detector(cfg)
    if cfg.dedup is not None and not 0.0 < cfg.dedup <= 1.0:
        raise UserError(f"--dedup must be within (0, 1] (got {cfg.dedup})")
    if cfg.clip or cfg.dedup is not None:
        check_model_ref("--clip-pretrained", cfg.clip_pretrained)
        if cfg.clip_model.startswith(("local-dir:", "hf-hub:")) and cfg.clip_pretrained != DEFAULTS["clip_pretrained"]:
            raise UserError(f"--clip-pretrained {cfg.clip_pretrained} would be ignored: --clip-model "
                            f"{cfg.clip_model} carries its own weights")
    if not cfg.dry_run:  # a dry run creates nothing
        _check_writable(cfg.outputdir)
    _fill_model_defaults(cfg)
    return cfg


def _check_scenes(cfg: RunConfig) -> None:
    """--objects-per-image, --cooccurrence and the template they imply."""
    lo, hi = parse_objects(cfg.objects_per_image)
    cfg.objects_per_image = objects_spec(lo, hi)
    n = len(cfg.classes)
    if hi > n:
        raise UserError(f"--objects-per-image {cfg.objects_per_image} is more objects than the {n} classes "
                        "in the class file (a scene never repeats a class)")
    if cfg.cooccurrence_file is not None:
        if hi < 2:
            raise UserError("--cooccurrence needs --objects-per-image above 1 (it weighs the extra classes)")
        cfg.cooccurrence = load_cooccurrence(cfg.cooccurrence_file, [c.label for c in cfg.classes])
    check_partners([c.label for c in cfg.classes], cfg.cooccurrence, lo, hi)
    if cfg.template is None:
        cfg.template = SCENE_TEMPLATE if hi > 1 else SINGLE_TEMPLATE


def _check_scene_prompts(cfg: RunConfig) -> None:
    """Every prompted class of a scene is verified and labelled: the prompt must name them all."""
    if not cfg.scenes:
        return
    for option, text in (("--template", cfg.template), ("--llm-instruction", cfg.llm_instruction)):
        if text is not None and "names" not in _fields(text):
            raise UserError(f"{option} {text!r} has no {{names}}: with --objects-per-image above 1 the prompt "
                            "must name every prompted class")


def _fields(template: str) -> set[str]:
    import string

    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError:
        return set()


def _check_template(template: str, option: str = "--template") -> None:
    """Only plain {name} / {names} fields: no attributes, indexes, conversions, format specs or positional
    fields."""
    import string

    bad = UserError(f"{option} may only contain {{name}} or {{names}} fields (and {{{{ }}}} for braces): "
                    f"{template!r}")
    try:
        fields_ = [(f, conv, spec) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError:
        raise bad from None
    if any(f not in ("name", "names") or conv or spec for f, conv, spec in fields_):
        raise bad
    if not fields_:
        raise UserError(f"{option} must contain {{name}} or {{names}}: {template!r}")


def _check_sampling(cfg: RunConfig) -> None:
    if cfg.temperature is not None and cfg.temperature <= 0:
        raise UserError(f"--temperature must be above 0 (got {cfg.temperature})")
    if cfg.top_p is not None and not 0 < cfg.top_p <= 1:
        raise UserError(f"--top-p must be within (0, 1] (got {cfg.top_p})")
    if cfg.top_k is not None and cfg.top_k < 1:
        raise UserError(f"--top-k must be at least 1 (got {cfg.top_k})")
    if cfg.guidance is not None and cfg.guidance < 0:
        raise UserError(f"--guidance must not be negative (got {cfg.guidance})")
    if cfg.condition_scale < 0:
        raise UserError(f"--condition-scale must not be negative (got {cfg.condition_scale})")
    if cfg.gpt:
        context = _gpt_context(cfg.gpt_model)
        if context is not None and cfg.gpt_max_tokens > context:
            raise UserError(f"--gpt-max-tokens {cfg.gpt_max_tokens} is above {cfg.gpt_model}'s context "
                            f"of {context} tokens")


def _gpt_context(model: str) -> int | None:
    """The model's context length from its config.json (a local folder), without loading it."""
    config = Path(model).expanduser() / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except ValueError:
            return None
        return data.get("n_positions") or data.get("max_position_embeddings")
    return 1024 if model.split("/")[-1].startswith(("gpt2", "distilgpt2")) else None


def _device_list(devices: str | None) -> list[str]:
    if not devices or devices == "all":
        return []
    return [d.strip() for d in devices.split(",")]


def has_chat_template(folder) -> bool | None:
    """For a local model folder: whether its tokenizer carries a chat template (None: not a folder)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return None
    if (folder / "chat_template.jinja").exists() or (folder / "chat_template.json").exists():
        return True
    config = folder / "tokenizer_config.json"
    try:
        return bool(json.loads(config.read_text()).get("chat_template")) if config.exists() else False
    except ValueError:
        return False


def _check_llm(cfg: RunConfig) -> None:
    if cfg.gpt:
        raise UserError("give --gpt (GPT-2 continuations) or --llm (chat-model captions), not both")
    check_model_ref("--llm", cfg.llm)
    if cfg.llm_max_tokens < 1:
        raise UserError(f"--llm-max-tokens must be at least 1 (got {cfg.llm_max_tokens})")
    if cfg.llm_instruction is not None:
        _check_template(cfg.llm_instruction, "--llm-instruction")
    if has_chat_template(cfg.llm) is False:
        raise UserError(f"--llm {cfg.llm} has no chat template: use an instruction-tuned (chat) model")


def _check_detector(cfg: RunConfig) -> None:
    check_model_ref("--detector", cfg.detector)
    if cfg.box_threshold is not None and not 0.0 <= cfg.box_threshold <= 1.0:
        raise UserError(f"--box-threshold must be within [0, 1] (got {cfg.box_threshold})")
    if not 0.0 < cfg.nms_iou <= 1.0:
        raise UserError(f"--nms-iou must be within (0, 1] (got {cfg.nms_iou})")
    from imaginarynet.detectors.registry import detector_family  # a config.json read: no model library

    detector_family(cfg.detector)  # a local model that is not a zero-shot detector is refused here


def _check_log_file(path: Path) -> None:
    folder = Path(path).expanduser().parent
    if not folder.is_dir():
        raise UserError(f"--log-json: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (Path(path).exists() and not os.access(path, os.W_OK)):
        raise UserError(f"--log-json: {path} is not writable")


def validate_annotate(cfg: RunConfig) -> RunConfig:
    """`annotate`: the options that apply to existing images, checked before any model loads."""
    if not (cfg.clip or cfg.detector):
        raise UserError("annotate needs --detector or --clip (or both): something must look at the images")
    if not 0.0 <= cfg.threshold <= 1.0:
        raise UserError(f"--threshold must be within [0, 1] (got {cfg.threshold})")
    if cfg.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {cfg.batch_size})")
    if cfg.clip:
        check_model_ref("--clip-pretrained", cfg.clip_pretrained)
    if cfg.detector:
        _check_detector(cfg)
    from imaginarynet.runtime import check_device

    if cfg.device:
        check_device(cfg.device)
    _check_writable(cfg.outputdir)
    return cfg


def _fill_model_defaults(cfg: RunConfig) -> None:
    """Steps, guidance and resolution the user left unset come from the model family."""
    if cfg.backend == "stablediffusion":
        from imaginarynet.backends.sd_families import GENERIC, family_defaults

        try:
            cfg.family = family_defaults(cfg.sd_model)
        except UserError:
            if not cfg.dry_run:
                raise
            cfg.family = {"steps": GENERIC[1], "guidance": GENERIC[2], "resolution": 512}  # a plan, not a run
        defaults = cfg.family
    else:
        defaults = {"steps": 50, "guidance": 7.5, "resolution": 512}
    for key in ("steps", "guidance", "resolution"):
        if getattr(cfg, key) is None:
            setattr(cfg, key, defaults[key])


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"--outputdir {out} is not writable: {exc.strerror or exc}") from exc


def config_from_run(run: dict, **overrides) -> RunConfig:
    """The RunConfig a run.json was written with (for finalize), with runtime overrides."""
    opts = {f.name: run["options"][f.name] for f in fields(RunConfig) if f.name in run["options"]}
    opts["classes"] = [ImageClass(label, name) for label, name in opts["classes"]]
    opts["outputdir"] = Path(opts["outputdir"])
    opts.update(overrides)
    return RunConfig(**opts)
