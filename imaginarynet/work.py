"""One unit of work for one worker: prompts → backend → filter → ledger records and staged JPEGs.

A unit is a list of (class index, attempt k) pairs chosen by the scheduler. UnitWorker loads
the stage set once, then `generate`s units (no disk writes) and `stage`s their images (atomic
writes). Executors decide where workers run; nothing here loops over units.
"""
from __future__ import annotations

import io
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from imaginarynet.backends.base import Request
from imaginarynet.backends.build import create_backend
from imaginarynet.config import RunConfig
from imaginarynet.detectors import create_detector, every_class_hit
from imaginarynet.errors import UserError, load_stage
from imaginarynet.filters import Candidate, create_filter
from imaginarynet.fsutil import atomic_write_bytes, fsync_dir
from imaginarynet.ledger import Attempt, new_attempt
from imaginarynet.outdir import OutputDir
from imaginarynet.plan import attempt_seed
from imaginarynet.prompts import create_prompt_source
from imaginarynet.runtime import Runtime, share_cores
from imaginarynet.scenes import Scenes
from imaginarynet.segmenters import every_class_masked, mask_boxes
from imaginarynet.sources import source_kind

JPEG_QUALITY = 95

Unit = list[tuple[int, int]]
Writes = list[tuple[Path, object]]  # (absolute path, PIL image)


def encode_jpeg(image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def stage_image(path: Path, image) -> None:
    atomic_write_bytes(path, encode_jpeg(image))


def sync_folders(writes: Writes) -> None:
    """Make the staged names durable before the ledger batch that names them is appended."""
    for folder in sorted({path.parent for path, _ in writes}):
        fsync_dir(folder)


def stage_images(writes: Writes) -> None:
    """Encode, write and make durable a unit's images: afterwards its ledger batch may name them."""
    for path, image in writes:
        stage_image(path, image)
    sync_folders(writes)


class StageSet:
    """The models of one worker, each built from its own options (by its factory); `load` loads them all."""

    def __init__(self, cfg: RunConfig, out: OutputDir):
        self.cfg = cfg
        self.scenes = Scenes.of(cfg)  # which classes each attempt prompts
        kind = source_kind(cfg)
        generated = kind == "generated"  # found or pasted images need no prompts nor backend
        self.prompts = create_prompt_source(cfg, out.state) if generated else None
        self.backend = create_backend(cfg) if generated else None
        self.files = None  # a folder's images, listed once per worker
        if kind == "folder":
            from imaginarynet.sources.folder import list_images

            self.files = list_images(Path(cfg.source))
        self.filter = create_filter(cfg)
        self.detector = create_detector(cfg)
        self.composer = None
        if kind == "composed":
            from imaginarynet.sources.composed import ComposeOptions, Composer

            self.composer = Composer(ComposeOptions.of(cfg))
        self.segmenter = None
        if cfg.segmenter:
            from imaginarynet.segmenters import create_segmenter

            self.segmenter = create_segmenter(cfg.segmenter, Runtime.verifier(cfg).device)
        self.embedder = None  # --dedup: CLIP image embeddings (the filter's model when --clip is on)
        if cfg.dedup is not None:
            self.embedder = self.filter if cfg.clip else create_filter(cfg, "clip")

    def load(self) -> None:
        """Every stage's models; one that fails says which stage and model (errors.load_stage)."""
        cfg = self.cfg
        if self.backend is not None:
            load_stage(self.prompts, _prompt_stage(cfg))
            load_stage(self.backend, f"backend {cfg.backend!r}" + (f" ({_backend_model(cfg)})"
                                                                    if _backend_model(cfg) else ""))
        if self.filter is not None:
            load_stage(self.filter, f"CLIP filter ({cfg.clip_model}, {cfg.clip_pretrained})")
        if self.detector is not None:
            load_stage(self.detector, f"detector {cfg.detector!r}")
        if self.segmenter is not None:
            load_stage(self.segmenter, f"segmenter {cfg.segmenter!r}")
        if self.embedder is not None and self.embedder is not self.filter:
            load_stage(self.embedder, f"--dedup CLIP embedder ({cfg.clip_model}, {cfg.clip_pretrained})")

    def describe(self) -> dict:
        info = {} if self.backend is None else {"generator": self.backend.describe(),
                                                "prompts": self.prompts.describe()}
        if self.filter is not None:
            info["filter"] = self.filter.describe()
        if self.detector is not None:
            info["detector"] = self.detector.describe()
        if self.segmenter is not None:
            info["segmenter"] = self.segmenter.describe()
        if self.composer is not None:
            info["composer"] = self.composer.describe()
        return info


def _prompt_stage(cfg: RunConfig) -> str:
    if cfg.gpt:
        return f"GPT-2 prompts ({cfg.gpt_model})"
    return f"LLM prompts ({cfg.llm})" if cfg.llm else "template prompts"


def _backend_model(cfg: RunConfig) -> str | None:
    """The model folder or hub id a built-in backend loads (plugins name their own in their errors)."""
    if cfg.backend == "stablediffusion":
        return cfg.sd_model
    if cfg.backend == "dalle-mini":
        return f"{cfg.dalle_model}, {cfg.vqgan_model}"
    return None


class StageTimer:
    """Wall-clock seconds spent per stage, for run.json and the report."""

    def __init__(self, previous: dict | None = None):
        self.seconds = dict(previous or {})

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add({stage: time.perf_counter() - start})

    def add(self, seconds: dict) -> None:
        for stage, secs in seconds.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + secs

    def rounded(self) -> dict:
        return {k: round(v, 3) for k, v in self.seconds.items()}


@dataclass
class Trial:
    """One attempt of a batch on its way through the stages; each stage fills in its part."""

    ci: int  # the primary class's index
    k: int
    prompted: list[str]  # labels of the prompted classes, the primary first
    scene: tuple[int, ...]  # their class indices
    request: Request
    image: object = None  # PIL image; None when the backend's safety checker flagged it
    score: dict | None = None  # the filter's verdict
    boxes: list[dict] | None = None  # the detector's boxes (with masks once segmented)

    @property
    def label(self) -> str:
        return self.prompted[0]

    def candidate(self) -> Candidate:
        return Candidate(self.image, self.ci, self.label, self.k, self.request.prompt, self.scene)

    def verdict(self, detecting: bool, segmenting: bool) -> tuple[str, str | None]:
        """(status, reason) once every stage has run."""
        if self.image is None:
            return "flagged", None
        if self.score is not None and not self.score["accepted"]:
            return "rejected", None
        if detecting and not every_class_hit(self.boxes, self.prompted):
            return "rejected", "no box"
        if segmenting and not every_class_masked(self.boxes, self.prompted):
            return "rejected", "no mask"
        return "kept", None


def run_batch(cfg: RunConfig, stages: StageSet, batch: Unit, timer: StageTimer,
              out: OutputDir) -> tuple[list[Attempt], Writes]:
    """Generate and judge one batch; returns ledger records and the images to stage."""
    classes = cfg.classes
    prompts: dict[tuple[int, int], str] = {}
    with timer("prompts"):
        for ci in sorted({ci for ci, _ in batch}):
            ks = [k for c, k in batch if c == ci]
            prompts.update(zip(((ci, k) for k in ks), stages.prompts.prompts(classes[ci], ks)))
    trials = []
    for ci, k in batch:
        scene = tuple(stages.scenes.classes_of(ci, k))
        trials.append(Trial(ci, k, [classes[j].label for j in scene], scene,
                            Request(prompts[ci, k], attempt_seed(cfg.seed, classes[ci].label, k))))
    with timer("generate"):
        generated = stages.backend.generate([t.request for t in trials])
    if len(generated) != len(trials):
        raise UserError(f"backend {cfg.backend!r} returned {len(generated)} images for {len(trials)} prompts")
    for t, g in zip(trials, generated):
        t.image = g.image
    images = [t for t in trials if t.image is not None]
    if stages.filter is not None:
        with timer("filter"):
            for t, score in zip(images, stages.filter.score([t.candidate() for t in images])):
                t.score = score
    if stages.detector is not None:  # after the filter: only images it kept are worth detecting in
        looked = [t for t in images if t.score is None or t.score["accepted"]]
        with timer("detect"):
            for t, found in zip(looked, stages.detector.detect([t.candidate() for t in looked])):
                t.boxes = found
    if stages.segmenter is not None:  # the boxes of images the detector kept, each image encoded once
        hit = [t for t in trials if t.boxes is not None and every_class_hit(t.boxes, t.prompted)]
        with timer("segment"):
            masked = mask_boxes(cfg, stages.segmenter, [t.image for t in hit], [t.boxes for t in hit],
                                [t.prompted for t in hit])
        for t, found in zip(hit, masked):
            t.boxes = found
    records, writes = [], []
    for t in trials:
        status, reason = t.verdict(stages.detector is not None, stages.segmenter is not None)
        labels = t.prompted if cfg.scenes else None  # single-object records as before
        if status == "flagged":
            records.append(new_attempt(t.label, t.k, t.request.prompt, t.request.seed, status, t.score,
                                       labels=labels))
            continue
        file = out.staged_rel(t.label, t.k) if status == "kept" else None
        records.append(new_attempt(t.label, t.k, t.request.prompt, t.request.seed, status, t.score, file,
                                   t.image.size, boxes=t.boxes if stages.detector is not None else None,
                                   reason=reason, labels=labels))
        if file:
            writes.append((out.staged(file), t.image))
        elif cfg.keep_rejected:
            writes.append((out.rejected_path(t.label, t.k), t.image))
    return records, writes


class UnitWorker:
    """One worker: loads the stage set once, then turns units into ledger records and staged images.

    Used in-process (executors.inline), in worker processes (executors.local) and as a Ray actor.
    """

    def __init__(self, cfg: RunConfig, device: str | None):
        start = time.perf_counter()
        self.cfg = replace(cfg, device=device) if device else cfg
        if (device or "cpu").startswith("cpu") and cfg.workers > 1:
            share_cores(cfg.workers)
        self.out = OutputDir(self.cfg.outputdir)
        self.batch = run_batch
        kind = source_kind(cfg)
        if kind == "folder":
            from imaginarynet.sources.folder import run_batch as folder_batch

            self.batch = folder_batch
        elif kind == "composed":
            from imaginarynet.sources.composed import run_batch as composed_batch

            self.batch = composed_batch
        self.stages = StageSet(self.cfg, self.out)
        self.stages.load()
        self.load_seconds = time.perf_counter() - start

    def describe(self) -> dict:
        return self.stages.describe()

    def ready(self) -> tuple[dict, float]:
        return self.describe(), self.load_seconds

    def generate(self, unit: Unit) -> tuple[list[Attempt], Writes, dict]:
        """Records, images to stage and seconds per stage. Writes nothing, except --dedup's embeddings:
        the scheduler reads them as soon as it records the unit, before the images are staged."""
        timer = StageTimer()
        records, writes = self.batch(self.cfg, self.stages, [tuple(x) for x in unit], timer, self.out)
        if self.stages.embedder is not None:
            with timer("dedup"):
                self._embed(records, writes)
        return records, writes, timer.seconds

    def _embed(self, records: list[Attempt], writes: Writes) -> None:
        from imaginarynet.dedup import write_embedding

        image_of = {path: image for path, image in writes}
        passed = [r for r in records if r["status"] == "kept"]
        if not passed:
            return
        candidates = [Candidate(image_of[self.out.staged(r["file"])], 0, r["class"], r["k"], r["prompt"])
                      for r in passed]
        for rec, vector in zip(passed, self.stages.embedder.embed(candidates)):
            write_embedding(self.out, rec["class"], rec["k"], vector)

    def stage(self, writes: Writes) -> float:
        """Encode and write the unit's images (before any ledger names them); returns seconds taken."""
        start = time.perf_counter()
        stage_images(writes)
        return time.perf_counter() - start

    def redo(self, unit: Unit, wanted: set[tuple[int, int]]) -> set[tuple[int, int]]:
        """Run a committed unit again as it first ran (the same attempts in the same order: the same batched
        computation, so the same pixels) and stage only the images of `wanted`, whose files a crash lost or
        tore; the unit's other files and its ledger records stay untouched. Returns the attempts of `wanted`
        that did not come out kept this time (they are dropped from the ledger and run again)."""
        unit = [tuple(x) for x in unit]
        records, writes = self.batch(self.cfg, self.stages, unit, StageTimer(), self.out)
        redone = {self.out.staged(r["file"]): key for r, key in zip(records, unit) if key in wanted and r["file"]}
        stage_images([(path, image) for path, image in writes if path in redone])
        return set(wanted) - set(redone.values())

    def run(self, unit: Unit) -> tuple[list[Attempt], dict]:
        """generate + stage, for workers in other processes: records once their images exist."""
        records, writes, seconds = self.generate(unit)
        seconds["write"] = seconds.get("write", 0.0) + self.stage(writes)
        return records, seconds
