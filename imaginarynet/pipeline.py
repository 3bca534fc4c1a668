"""Ties the stages together for one worker: schedule → prompts → backend → filter → stage → ledger.

Called by the CLI with a validated RunConfig. Models load only if work remains;
JPEG encoding runs on a thread pool while the device computes the next batch.
"""
from __future__ import annotations

import io
import json
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata

from imaginarynet.backends.base import Request, create_backend
from imaginarynet.config import RunConfig
from imaginarynet.dataset import select
from imaginarynet.filters import Candidate
from imaginarynet.fsutil import atomic_write_bytes, atomic_write_text
from imaginarynet.ledger import Ledger
from imaginarynet.outdir import OutputDir
from imaginarynet.plan import AttemptScheduler, attempt_seed

JPEG_QUALITY = 95


@dataclass
class RunResult:
    complete: bool  # all quotas filled
    already_done: bool = False
    kept: int = 0
    target: int = 0
    shortfalls: list[dict] = field(default_factory=list)
    table: list[dict] = field(default_factory=list)
    problems: str = ""  # what `imaginarynet check` found in the written dataset
    shard_only: bool = False  # a --shard that finished its slice; another shard assembles the dataset


def encode_jpeg(image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def package_versions() -> dict:
    names = ["imaginarynet", "torch", "diffusers", "transformers", "open_clip_torch", "jax", "flax", "pillow"]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def worker_devices(cfg: RunConfig) -> list[str]:
    """One entry per worker: --devices (a list or 'all'), else --workers copies of --device."""
    if cfg.devices:
        if cfg.devices == "all":
            import torch

            n = torch.cuda.device_count()
            return [f"cuda:{i}" for i in range(n)] if n else ["cpu"]
        return [d.strip() for d in cfg.devices.split(",") if d.strip()]
    from imaginarynet.backends.base import resolve_device

    return [cfg.device or resolve_device(None)] * cfg.workers if cfg.workers > 1 or cfg.engine == "ray" \
        else [cfg.device or ""]


class Stages:
    """The models of one worker, each loaded on first use."""

    def __init__(self, cfg: RunConfig, out: OutputDir):
        from imaginarynet.prompts import create_prompt_source

        self.cfg = cfg
        self.prompts = create_prompt_source(cfg, out.state)
        self.backend = create_backend(cfg)
        self.filter = None
        if cfg.clip:
            from imaginarynet.filters.clip import ClipFilter

            self.filter = ClipFilter(cfg)

    def load(self) -> None:
        self.prompts.load()
        self.backend.load()
        if self.filter is not None:
            self.filter.load()

    def describe(self) -> dict:
        info = {"generator": self.backend.describe(), "prompts": self.prompts.describe()}
        if self.filter is not None:
            info["filter"] = self.filter.describe()
        return info


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
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def rounded(self) -> dict:
        return {k: round(v, 3) for k, v in self.seconds.items()}


def run_batch(cfg: RunConfig, stages: Stages, batch: list[tuple[int, int]], timer: StageTimer):
    """Generate and judge one batch; returns ledger records and the images to stage."""
    classes = cfg.classes
    prompts: dict[tuple[int, int], str] = {}
    with timer("prompts"):
        for ci in sorted({ci for ci, _ in batch}):
            ks = [k for c, k in batch if c == ci]
            prompts.update(zip(((ci, k) for k in ks), stages.prompts.prompts(classes[ci], ks)))
    requests = [Request(prompts[ci, k], attempt_seed(cfg.seed, classes[ci].label, k)) for ci, k in batch]
    with timer("generate"):
        generated = stages.backend.generate(requests)
    scores = [None] * len(batch)
    if stages.filter is not None:
        judged = [i for i, g in enumerate(generated) if g.image is not None]
        candidates = [Candidate(generated[i].image, batch[i][0], classes[batch[i][0]].label, batch[i][1],
                                requests[i].prompt) for i in judged]
        with timer("filter"):
            for i, s in zip(judged, stages.filter.score(candidates)):
                scores[i] = s
    records, writes = [], []
    for (ci, k), req, gen, score in zip(batch, requests, generated, scores):
        label = classes[ci].label
        rec = {"class": label, "k": k, "prompt": req.prompt, "seed": req.seed, "score": score,
               "file": None, "width": None, "height": None}
        if gen.image is None:
            rec["status"] = "flagged"
        else:
            rec["width"], rec["height"] = gen.image.size
            rec["status"] = "kept" if score is None or score["accepted"] else "rejected"
            if rec["status"] == "kept":
                rec["file"] = f"images/{label}/{k:06d}.jpg"
                writes.append((rec["file"], gen.image))
            elif cfg.keep_rejected:
                writes.append((f"../rejected/{label}/{k:06d}.jpg", gen.image))
        records.append(rec)
    return records, writes


class Progress:
    def __init__(self, cfg: RunConfig, sched: AttemptScheduler):
        from tqdm import tqdm

        self.sched = sched
        self.bar = tqdm(total=sum(cfg.quotas), initial=self._kept(), unit="img", desc="kept",
                        disable=cfg.quiet, dynamic_ncols=True)

    def _kept(self) -> int:
        return sum(min(k, q) for k, q in zip(self.sched.kept, self.sched.quotas))

    def update(self) -> None:
        self.bar.update(self._kept() - self.bar.n)
        attempted = sum(self.sched.attempted)
        if attempted:
            self.bar.set_postfix(accept=f"{sum(self.sched.kept) / attempted:.0%}", refresh=False)

    def close(self) -> None:
        self.bar.close()


def generate(cfg: RunConfig, log=print) -> RunResult:
    out = OutputDir(cfg.outputdir)
    previous = out.open_for(cfg)
    if previous and previous.get("status") == "complete":
        log(f"{cfg.outputdir}: run already complete ({previous['counts']['kept']} images); nothing to do")
        return RunResult(complete=not previous.get("shortfalls"), already_done=True,
                         kept=previous["counts"]["kept"], target=previous["counts"]["target"],
                         shortfalls=previous.get("shortfalls", []))
    started = time.time()
    info = {
        "status": "running", "fingerprint": cfg.fingerprint(), "options": cfg.to_json(),
        "data_options": json.loads(json.dumps(cfg.data_options(), default=str)),
        "versions": package_versions(), "command": sys.argv,
    }
    out.write_run(info)
    labels = [c.label for c in cfg.classes]
    caps = [cfg.max_attempts_for(q) for q in cfg.quotas]
    models = {}
    timer = StageTimer((previous or {}).get("timings"))
    events = EventLog(cfg.log_json)
    stages = None
    if cfg.shard:
        from imaginarynet.executors import shards

        i, n = shards.parse_shard(cfg.shard)
        shard_ledger = Ledger(shards.shard_ledger(out.state, i, n))
        sched = shards.ShardScheduler(cfg, out.state, i, n, shard_ledger.by_class())
        if not sched.done():
            stages = Stages(cfg, out)
            with timer("load"):
                stages.load()
            _generate_loop(cfg, stages, sched, shard_ledger, out, timer, events)
        if not shards.finish_shard(out.state, i, n, len(shard_ledger.records)):
            log(f"shard {i}/{n} finished ({len(shard_ledger.records)} attempts); the last shard to finish "
                "assembles the dataset")
            return RunResult(complete=False, shard_only=True)
    ledger = Ledger(out.ledger)
    if cfg.shard or cfg.finalize:
        from imaginarynet.executors import shards

        shards.merge_shard_ledgers(out.state, ledger)
    sched = AttemptScheduler(cfg.quotas, caps, labels, ledger.by_class())
    events.write("start", outputdir=str(cfg.outputdir), target=sum(cfg.quotas), kept=sum(
        min(k, q) for k, q in zip(sched.kept, cfg.quotas)))
    devices = worker_devices(cfg)
    if not sched.done():
        if len(devices) > 1 or cfg.engine == "ray":
            models = _parallel_loop(cfg, devices, sched, ledger, timer, events)
        else:
            if stages is None:
                stages = Stages(cfg, out)
                with timer("load"):
                    stages.load()
            _generate_loop(cfg, stages, sched, ledger, out, timer, events)
    if stages is not None:
        models = stages.describe()
    with timer("finalize"):
        entries = _finalize(cfg, ledger, out)
        from imaginarynet.check import check_voc, format_problems

        problems = format_problems(check_voc(out.root, labels), out.root)
    table = summary_table(cfg, sched)
    shortfalls = sched.shortfalls()
    info.update(status="complete", models=models or (previous or {}).get("models", {}), shortfalls=shortfalls,
                counts={"kept": len(entries), "target": sum(cfg.quotas), "attempts": sum(sched.attempted)},
                per_class=table, seconds=round(time.time() - started, 2), check=problems or "ok",
                timings=timer.rounded())
    out.write_run(info)
    events.write("end", kept=len(entries), target=sum(cfg.quotas), shortfalls=[s["class"] for s in shortfalls])
    events.close()
    if cfg.report:
        from imaginarynet.report import write_report

        write_report(out.root)
    return RunResult(complete=not shortfalls, kept=len(entries), target=sum(cfg.quotas),
                     shortfalls=shortfalls, table=table, problems=problems)


class EventLog:
    """--log-json: one JSON object per line and event (start, every batch, end), flushed at once."""

    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8") if path else None

    def write(self, event: str, **fields) -> None:
        if self.file:
            self.file.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


def _batch_event(events: EventLog, records: list[dict], seconds: float, **extra) -> None:
    per_class: dict[str, dict] = {}
    for r in records:
        c = per_class.setdefault(r["class"], {"attempts": 0, "kept": 0})
        c["attempts"] += 1
        c["kept"] += r["status"] == "kept"
    events.write("batch", attempts=len(records), kept=sum(c["kept"] for c in per_class.values()),
                 classes=per_class, seconds=round(seconds, 3), **extra)


def _generate_loop(cfg, stages, sched, ledger, out, timer: StageTimer, events: EventLog) -> None:
    """One worker in this process: JPEG writes of batch i overlap the generation of batch i+1."""
    progress = Progress(cfg, sched)
    pending = None  # (futures, records) of the previous batch, appended once its files exist
    with ThreadPoolExecutor(max_workers=4) as pool:
        try:
            while batch := sched.next_batch(cfg.batch_size):
                start = time.perf_counter()
                records, writes = run_batch(cfg, stages, batch, timer)
                sched.record(records)
                futures = [pool.submit(lambda p, im: atomic_write_bytes(out.state / p, encode_jpeg(im)), p, im)
                           for p, im in writes]
                if pending:
                    with timer("write"):
                        _commit(ledger, *pending)
                pending = (futures, records)
                progress.update()
                _batch_event(events, records, time.perf_counter() - start)
            if pending:
                with timer("write"):
                    _commit(ledger, *pending)
        finally:
            progress.close()


def _parallel_loop(cfg, devices, sched, ledger, timer: StageTimer, events: EventLog) -> dict:
    """Several workers (processes or Ray actors); returns the models the first worker loaded."""
    progress = Progress(cfg, sched)
    models: dict = {}

    def on_unit(records, seconds, worker):
        ledger.append_batch(records)
        sched.record(records)
        for stage, secs in seconds.items():
            timer.seconds[stage] = timer.seconds.get(stage, 0.0) + secs
        progress.update()
        _batch_event(events, records, sum(seconds.values()), worker=worker)

    try:
        if cfg.engine == "ray":
            from imaginarynet.executors.ray import run_ray

            per_worker = run_ray(cfg, devices, sched, on_unit, models.update)
        else:
            from imaginarynet.executors.local import run_local

            per_worker = run_local(cfg, devices, sched, on_unit, lambda m: models or models.update(m))
    finally:
        progress.close()
    models["workers"] = {"engine": cfg.engine, "devices": devices,
                         "attempts_per_worker": [per_worker[i] for i in sorted(per_worker)]}
    return models


def _commit(ledger: Ledger, futures, records) -> None:
    for f in futures:
        f.result()  # re-raises a failed write before the ledger points at the file
    ledger.append_batch(records)


def _finalize(cfg: RunConfig, ledger: Ledger, out: OutputDir):
    from imaginarynet.writers.voc import write_voc

    by_class = ledger.by_class()
    entries = select(cfg.classes, cfg.quotas, by_class)
    write_voc(out.root, out.state, entries, [c.label for c in cfg.classes])
    meta = "".join(json.dumps({"id": e.id, "file_name": f"VOC2007/JPEGImages/{e.id}.jpg", "class": e.label,
                               "name": e.name, "attempt": e.k, "prompt": e.prompt, "seed": e.seed,
                               "width": e.width, "height": e.height, "clip": e.score}, sort_keys=True) + "\n"
                   for e in entries)
    atomic_write_text(out.root / "metadata.jsonl", meta)
    for cls in cfg.classes:
        used = "".join(r["prompt"] + "\n" for r in by_class.get(cls.label, []))
        atomic_write_text(out.root / "prompts" / f"{cls.label}.txt", used)
    return entries


def summary_table(cfg: RunConfig, sched: AttemptScheduler) -> list[dict]:
    rows = []
    for i, cls in enumerate(cfg.classes):
        attempted = sched.attempted[i]
        rows.append({"class": cls.label, "target": cfg.quotas[i], "kept": min(sched.kept[i], cfg.quotas[i]),
                     "attempts": attempted,
                     "acceptance": round(sched.kept[i] / attempted, 4) if attempted else None})
    return rows


def format_table(rows: list[dict]) -> str:
    width = max([len("class")] + [len(r["class"]) for r in rows])
    lines = [f"{'class':<{width}}  {'kept':>6} / {'target':<6} {'attempts':>8}  {'accept':>6}"]
    for r in rows:
        acc = "-" if r["acceptance"] is None else f"{r['acceptance']:.0%}"
        mark = "  SHORT" if r["kept"] < r["target"] else ""
        lines.append(f"{r['class']:<{width}}  {r['kept']:>6} / {r['target']:<6} {r['attempts']:>8}  {acc:>6}{mark}")
    return "\n".join(lines)
