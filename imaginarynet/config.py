"""RunConfig: the run's own options plus every stage's (options.STAGE_OPTIONS), checked before any model loads.

Each stage declares its options, their checks and its part of the fingerprint next to its code. `data_options()`
gathers the parts that change the dataset; its hash is the run fingerprint stored in run.json, so a re-run with
other data options is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from imaginarynet.classes import ImageClass
from imaginarynet.errors import UserError
from imaginarynet.options import StageOptions, cli_default, compose, option, stage_classes
from imaginarynet.scenes import parse_objects

__all__ = ["RunConfig", "RunOptions", "DEFAULTS", "FOLDER_STAGES", "COMPOSE_STAGES", "validate", "config_from_run"]

DTYPES = ("auto", "fp32", "fp16", "bf16")
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class RunOptions(StageOptions):
    """What to make, where, and how the run uses the machine."""

    # What to make and where (group "dataset").
    classfile: str = option(MISSING, "--classfile", cli_default="voc", data=False, group="dataset",
                            help="Class file path, or a bundled name: voc, coco.")
    classes: list[ImageClass] = option(MISSING)  # read from the class file
    outputdir: Path = option(MISSING, "--outputdir", cli_default="output", data=False, group="dataset", type=Path,
                             help="Output directory (a VOCdevkit root).")
    num: int | None = option(None, "--num", type=int, data=False, group="dataset", help=(
        "Total images in the dataset, split evenly across classes (earlier classes get the remainder). "
        "Default: 100 per class."))
    per_class: int | None = option(None, "--per-class", type=int, data=False, group="dataset",
                                   help="Images per class (instead of --num).")
    seed: int = option(0, "--seed", type=int, group="dataset", help="Run seed.")
    quotas: list[int] = option(None, factory=list)  # per class, from --num / --per-class
    source: str | None = option(None)  # `annotate`: the folder of existing images
    # Refills and shortfalls (group "quotas").
    max_attempts: int | None = option(None, "--max-attempts", type=int, group="quotas", help=(
        "Attempt cap per class when images are rejected (CLIP, safety checker) [default: 4x quota]."))
    keep_rejected: bool = option(False, "--keep-rejected", is_flag=True, data=False, group="quotas",
                                 help="Also save CLIP-rejected images under OUT/rejected/.")
    strict: bool = option(False, "--strict", is_flag=True, data=False, group="quotas",
                          help="Exit 1 when a class cannot fill its quota.")
    # Devices, precision and workers (group "compute").
    batch_size: int = option(4, "--batch-size", type=int, data=False, group="compute", help="Images per model call.")
    dtype: str = option("auto", "--dtype", choices=DTYPES, group="compute", help="auto: fp16 on CUDA, fp32 on CPU.")
    compile: bool = option(False, "--compile", "compile", is_flag=True, data=False, group="compute",
                           help="torch.compile the denoiser (minutes of warm-up, then faster; for long runs).")
    cpu_offload: bool = option(False, "--cpu-offload", is_flag=True, data=False, group="compute",
                               help="Keep models on the CPU until used (GPUs with ~8 GB).")
    tf32: bool = option(False, "--tf32", is_flag=True, data=False, group="compute",
                        help="Allow TF32 matmuls on Ampere and newer GPUs.")
    device: str | None = option(None, "--device", data=False, group="compute", help=(
        "torch/jax device for everything, e.g. cuda:0 or cpu [default: cuda if present]."))
    workers: int = option(1, "--workers", type=int, data=False, group="compute",
                          help="Worker processes on --device (the CPU, for instance), each pulling work units.")
    devices: str | None = option(None, "--devices", data=False, group="compute",
                                 help="One worker per device: cuda:0,cuda:1,... or 'all'.")
    engine: str = option("local", "--engine", choices=ENGINES, data=False, group="compute", help=(
        "Where workers run: local processes, or Ray actors (pip install 'imaginarynet[ray]')."))
    ray_address: str | None = option(None, "--ray-address", data=False, group="compute",
                                     help="Ray cluster to join (default: start a local one).")
    shard: str | None = option(None, "--shard", metavar="I/N", data=False, group="compute", help=(
        "Run slice I of N (a job array task); the last slice to finish assembles the dataset."))
    finalize: bool = option(False, data=False)  # `imaginarynet finalize` runs the pipeline
    # The run itself (group "run").
    overwrite: bool = option(False, "--overwrite", is_flag=True, data=False, group="run",
                             help="Delete a previous run in --outputdir and start again.")
    quiet: bool = option(False, "--quiet", "-q", is_flag=True, data=False, group="run",
                         help="No progress bar or summary table.")
    log_json: Path | None = option(None, "--log-json", type=Path, dir_okay=False, data=False, group="run",
                                   help="Append machine-readable events to FILE: one JSON line per batch.")
    report: bool = option(True, "--no-report", "no_report", is_flag=True, data=False, group="run",
                          help="Skip OUT/report/index.html at the end.")
    dry_run: bool = option(False, "--dry-run", is_flag=True, data=False, group="run",
                           help="Print the plan (quotas, models, layout, disk) and load nothing.")

    def data_options(self, cfg) -> dict:
        opts = super().data_options(cfg)
        opts["classes"] = [[c.label, c.name] for c in self.classes]
        if self.source is None:
            opts.pop("source")
        return opts

    def check(self, cfg) -> dict:
        if self.workers < 1:
            raise UserError(f"--workers must be at least 1 (got {self.workers})")
        if self.devices and self.workers > 1:
            raise UserError("give --devices (one worker per device) or --workers, not both")
        if self.shard:
            from imaginarynet.plan import parse_shard

            parse_shard(self.shard)
        if self.engine not in ENGINES:
            raise UserError(f"--engine must be one of {', '.join(ENGINES)} (got {self.engine!r})")
        if self.engine == "ray":
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                raise UserError("--engine ray needs the 'ray' package: pip install 'imaginarynet[ray]'")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise UserError(f"--max-attempts must be at least 1 (got {self.max_attempts})")
        if self.overwrite and self.shard:
            raise UserError("--overwrite cannot be combined with --shard (one slice would delete the others' "
                            "work); delete the folder first")
        from imaginarynet.runtime import check_device

        listed = [] if not self.devices or self.devices == "all" else [d.strip() for d in self.devices.split(",")]
        for spec in ([self.device] if self.device else []) + listed:
            check_device(spec)
        if self.log_json and not self.dry_run:
            _check_log_file(self.log_json)
        return {} if self.source else {"quotas": self._quotas()}  # a folder: every image, no quota

    def _quotas(self) -> list[int]:
        n = len(self.classes)
        if self.num is not None and self.per_class is not None:
            raise UserError("give either --num or --per-class, not both")
        if self.per_class is not None:
            if self.per_class < 1:
                raise UserError(f"--per-class must be at least 1 (got {self.per_class})")
            return [self.per_class] * n
        num = self.num if self.num is not None else 100 * n
        if num < 1:
            raise UserError(f"--num must be at least 1 (got {num})")
        if num < n:
            raise UserError(f"--num {num} is fewer images than classes ({n}); every class needs one")
        from imaginarynet.plan import split_quota

        return split_quota(num, n)


class RunConfig(compose("RunFields", RunOptions, *stage_classes())):
    """Every option of a run, flat (`cfg.clip_model`); `cfg.stage(FilterOptions)` is one stage's frozen view."""

    def stages(self) -> list[StageOptions]:
        return [cls.of(self) for cls in (RunOptions, *stage_classes())]

    def data_options(self) -> dict:
        opts = {}
        for stage in self.stages():
            opts.update(stage.data_options(self))
        return opts

    def fingerprint(self) -> str:
        blob = json.dumps(self.data_options(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def object_range(self) -> tuple[int, int]:
        return parse_objects(self.objects_per_image)

    @property
    def scenes(self) -> bool:
        """Whether attempts may prompt several classes (their records then list them)."""
        return self.object_range[1] > 1

    def max_attempts_for(self, quota: int) -> int:
        """Attempt cap per class; only reached when the filter or safety checker rejects images."""
        return self.max_attempts if self.max_attempts is not None else 4 * quota

    def models(self) -> list[tuple[str, str, str]]:
        """(role, reference, kind) of every model the run loads."""
        return [m for stage in self.stages() for m in stage.models(self)]

    def to_json(self) -> dict:
        d = asdict(self)
        d["outputdir"] = str(self.outputdir)
        d["log_json"] = str(self.log_json) if self.log_json else None
        d["classes"] = [[c.label, c.name] for c in self.classes]
        return d


# The one source of option defaults (the CLI shows these).
DEFAULTS = {f.name: cli_default(f) for f in fields(RunConfig) if cli_default(f) is not MISSING}


# The stages that look at a folder's existing images (`annotate DIR`), and those of `compose`.
FOLDER_STAGES = ("filter", "detector", "segmenter")
COMPOSE_STAGES = ("scenes", "compose")


def validate(cfg: RunConfig) -> RunConfig:
    """Every active stage's checks in registry order (each may resolve defaults, e.g. the template a scene
    needs), the output folder (so a bad option never creates it), then the defaults models' files give."""
    stages = cfg.stages()
    if cfg.source is not None:
        if not (cfg.clip or cfg.detector):
            raise UserError("annotate needs --detector or --clip (or both): something must look at the images")
        stages = [s for s in stages if isinstance(s, RunOptions) or s.group in FOLDER_STAGES]
    elif cfg.compose_sources:
        stages = [s for s in stages if isinstance(s, RunOptions) or s.group in COMPOSE_STAGES]
    for stage in stages:
        for key, value in stage.check(cfg).items():
            setattr(cfg, key, value)
    if not cfg.dry_run:  # a dry run creates nothing
        _check_writable(cfg.outputdir)
    for stage in stages:
        for key, value in stage.defaults(cfg).items():
            setattr(cfg, key, value)
    return cfg


def _check_log_file(path: Path) -> None:
    folder = Path(path).expanduser().parent
    if not folder.is_dir():
        raise UserError(f"--log-json: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (Path(path).exists() and not os.access(path, os.W_OK)):
        raise UserError(f"--log-json: {path} is not writable")


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
