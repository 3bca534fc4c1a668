"""One unit of work for one worker: prompts → backend → filter → ledger records and staged JPEGs.

A unit is a list of (class index, attempt k) pairs chosen by the scheduler. UnitWorker loads
the stage set once, then `generate`s units (no disk writes) and `stage`s their images (atomic
writes). Executors decide where workers run; nothing here loops over units.
"""
from __future__ import annotations

import io
import time
from contextlib import contextmanager
from dataclasses import replace
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


def run_batch(cfg: RunConfig, stages: StageSet, batch: Unit, timer: StageTimer,
              out: OutputDir) -> tuple[list[Attempt], Writes]:
    """Generate and judge one batch; returns ledger records and the images to stage."""
    classes = cfg.classes
    prompts: dict[tuple[int, int], str] = {}
    with timer("prompts"):
        for ci in sorted({ci for ci, _ in batch}):
            ks = [k for c, k in batch if c == ci]
            prompts.update(zip(((ci, k) for k in ks), stages.prompts.prompts(classes[ci], ks)))
    requests = [Request(prompts[ci, k], attempt_seed(cfg.seed, classes[ci].label, k)) for ci, k in batch]
    scenes = [tuple(stages.scenes.classes_of(ci, k)) for ci, k in batch]
    with timer("generate"):
        generated = stages.backend.generate(requests)
    if len(generated) != len(requests):
        raise UserError(f"backend {cfg.backend!r} returned {len(generated)} images for {len(requests)} prompts")
    scores = [None] * len(batch)
    if stages.filter is not None:
        judged = [i for i, g in enumerate(generated) if g.image is not None]
        with timer("filter"):
            for i, s in zip(judged, stages.filter.score(_candidates(judged, batch, generated, requests, classes,
                                                                    scenes))):
                scores[i] = s
    boxes: list[list[dict] | None] = [None] * len(batch)
    if stages.detector is not None:  # after the filter: only images it kept are worth detecting in
        looked = [i for i, g in enumerate(generated) if g.image is not None and (scores[i] is None
                                                                                 or scores[i]["accepted"])]
        with timer("detect"):
            for i, found in zip(looked, stages.detector.detect(_candidates(looked, batch, generated, requests,
                                                                           classes, scenes))):
                boxes[i] = found
    prompted = [[classes[j].label for j in scene] for scene in scenes]
    if stages.segmenter is not None:  # the boxes of images the detector kept, each image encoded once
        hit = [i for i in range(len(batch)) if boxes[i] is not None and every_class_hit(boxes[i], prompted[i])]
        with timer("segment"):
            masked = mask_boxes(cfg, stages.segmenter, [generated[i].image for i in hit], [boxes[i] for i in hit],
                                [prompted[i] for i in hit])
        for i, found in zip(hit, masked):
            boxes[i] = found
    records, writes = [], []
    for (ci, k), req, gen, score, found, scene in zip(batch, requests, generated, scores, boxes, scenes):
        label = classes[ci].label
        labels = [classes[j].label for j in scene] if cfg.scenes else None  # single-object records as before
        if gen.image is None:
            records.append(new_attempt(label, k, req.prompt, req.seed, "flagged", score, labels=labels))
            continue
        status, reason = "kept", None
        if score is not None and not score["accepted"]:
            status = "rejected"
        elif stages.detector is not None and not every_class_hit(found, labels or [label]):
            status, reason = "rejected", "no box"
        elif stages.segmenter is not None and not every_class_masked(found, labels or [label]):
            status, reason = "rejected", "no mask"
        file = out.staged_rel(label, k) if status == "kept" else None
        records.append(new_attempt(label, k, req.prompt, req.seed, status, score, file, gen.image.size,
                                   boxes=found if stages.detector is not None else None, reason=reason,
                                   labels=labels))
        if file:
            writes.append((out.staged(file), gen.image))
        elif cfg.keep_rejected:
            writes.append((out.rejected_path(label, k), gen.image))
    return records, writes


def _candidates(indices, batch, generated, requests, classes, scenes) -> list[Candidate]:
    return [Candidate(generated[i].image, batch[i][0], classes[batch[i][0]].label, batch[i][1], requests[i].prompt,
                      scenes[i]) for i in indices]


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
        if source_kind(cfg) == "folder":
            from imaginarynet.sources.folder import run_batch as folder_batch

            self.batch = folder_batch
        elif source_kind(cfg) == "composed":
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
