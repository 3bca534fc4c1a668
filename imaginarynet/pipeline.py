"""Orchestrates one run, of generated images or of a folder's (sources/): finished already? → a --shard's
slice → the executor → assembly → run.json → report.

Called by the CLI with a validated RunConfig. Models load only if work remains (the executor's
workers load them); what runs where is the executors' business, what a unit does is work.py's.
"""
from __future__ import annotations

import os
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Literal

from imaginarynet import executors
from imaginarynet.config import RunConfig
from imaginarynet.dataset import image_labels, label_counts
from imaginarynet.errors import UserError
from imaginarynet.executors.shards import ShardScheduler, finish_shard, merge_shard_ledgers
from imaginarynet.finalize import assemble, repair, start_record
from imaginarynet.fsutil import remove_temporaries
from imaginarynet.ledger import Ledger
from imaginarynet.monitor import EventLog, Progress, kept_total
from imaginarynet.outdir import OutputDir
from imaginarynet.plan import AttemptScheduler, parse_shard
from imaginarynet.runstate import RunState
from imaginarynet.runtime import worker_devices
from imaginarynet.sources import create_source
from imaginarynet.work import StageTimer, UnitWorker

Outcome = Literal["complete", "short", "already_done", "shard_finished"]


@dataclass
class RunResult:
    outcome: Outcome
    kept: int = 0
    target: int = 0
    shortfalls: list[dict] = field(default_factory=list)  # classes that hit their attempt cap
    table: list[dict] = field(default_factory=list)  # per-class summary rows
    cooccurrence: dict | None = None  # scenes: {label: {label: images carrying both}}
    problems: str = ""  # what `imaginarynet check` found in the written dataset
    extra: dict = field(default_factory=dict)  # the source's own counts (a folder's unreadable files)


class RunSink:
    """Where executors deliver results (the contract in executors/__init__.py)."""

    def __init__(self, sched, ledger: Ledger, timer: StageTimer, progress: Progress, events: EventLog,
                 on_first_commit=None):
        self.sched, self.ledger, self.timer, self.progress, self.events = sched, ledger, timer, progress, events
        self.on_first_commit = on_first_commit
        self.described: dict = {}

    def ready(self, described: dict, load_seconds: float) -> None:
        self.described = self.described or described  # the first worker's models stand for all
        self.timer.add({"load": load_seconds})

    def record(self, records: list[dict]) -> None:
        self.sched.record(records)

    def commit(self, records: list[dict], seconds: dict, worker: int) -> None:
        self.ledger.append_batch(records)
        if self.on_first_commit:
            self.on_first_commit()
            self.on_first_commit = None
        self.timer.add(seconds)
        self.progress.update()
        self.events.batch(records, sum(seconds.values()), worker=worker)


def run(cfg: RunConfig, log=print) -> RunResult:
    """One run, holding OUT's lock (shared between the --shard slices of one run)."""
    out = OutputDir(cfg.outputdir)
    state = RunState(out)
    with state.locked(shared=bool(cfg.shard)):
        if cfg.shard:  # slices share the lock: settling a killed --overwrite is a plain run's or finalize's job
            if state.leftovers():
                raise UserError(f"{out.root}: an interrupted --overwrite left a previous dataset set aside; run "
                                "the plain command (without --shard) or `imaginarynet finalize` first")
        elif note := state.settle(carry_on=cfg.overwrite):
            log(note)
        aside = state.set_aside() if cfg.overwrite else None
        try:
            return _run(cfg, state, log, aside)
        except BaseException:
            if aside is not None and aside.exists():  # the new run failed before its first batch
                state.restore(aside)
            raise


def _run(cfg: RunConfig, state: RunState, log, aside) -> RunResult:
    out = state.out
    source = create_source(cfg)
    target = sum(source.quotas)

    def drop_previous() -> None:  # the new run has committed its first batch: the old one can go
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    # 1. A finished run does no work.
    previous = state.open_for(cfg)
    if previous and previous.get("status") == "complete":
        kept = previous["counts"]["kept"]
        from imaginarynet.report import finish_report

        finish_report(cfg.report, out.root, f"{source.noun} already complete ({kept} images)", log)
        return RunResult("already_done", kept=kept, target=previous["counts"]["target"],
                         shortfalls=previous.get("shortfalls", []))
    if not cfg.shard:  # slices of one run may be writing right now; the next plain run or finalize cleans up
        remove_temporaries(out.root)
    started = time.time()
    run_record = start_record(cfg)
    state.write(run_record)
    timer = StageTimer((previous or {}).get("timings"))
    devices = worker_devices(cfg)
    engine, executor = executors.pick(cfg, devices)  # one executor for the slice and the fill
    described: dict = {}
    with EventLog(cfg.log_json) as events, ExitStack() as held:
        # 2. A --shard runs its own slice; only the last one to finish goes on.
        if cfg.shard:
            i, n = parse_shard(cfg.shard)
            shard_ledger = Ledger(out.shard_ledger(i, n))
            repair(out, shard_ledger, log, _redo(cfg, source, executor, devices))
            sched = ShardScheduler(source, out, i, n, shard_ledger.by_class(), accept=_judge(cfg, out))
            described.update(_work(cfg, source, engine, executor, devices, sched, shard_ledger, timer, events,
                                   drop_previous))
            assembler = finish_shard(out, i, n, len(shard_ledger.records))
            if assembler is None:
                log(f"shard {i}/{n} finished ({len(shard_ledger.records)} attempts); the last shard to finish "
                    "assembles the dataset")
                return RunResult("shard_finished")
            held.callback(os.close, assembler)

        # 3. The ledger, with every shard's attempts merged in, says what is done.
        ledger = Ledger(out.ledger)
        if out.shards.exists():  # also when a plain run continues a dataset that shards started
            merge_shard_ledgers(out, ledger)
        repair(out, ledger, log, _redo(cfg, source, executor, devices))
        sched = AttemptScheduler(source.quotas, source.caps, source.streams, ledger.by_class(),
                                 accept=_judge(cfg, out), stream_of=source.stream_of)
        events.write("start", outputdir=str(cfg.outputdir), target=target, kept=kept_total(sched))

        # 4. Run every attempt a sequential run would still need.
        described.update(_work(cfg, source, engine, executor, devices, sched, ledger, timer, events,
                               drop_previous))
        drop_previous()

        # 5. Write and check the dataset.
        with timer("finalize"):
            entries, problems = assemble(cfg, out, ledger, source, skip=sched.duplicate_keys())

        # 6. run.json says what was made, how, and what fell short.
        labels = [c.label for c in cfg.classes]
        table = source.table(sched, ledger.by_class())
        if cfg.dedup is not None:
            for row, dups in zip(table, sched.duplicates):
                row["duplicates"] = len(dups)
        scene_counts = {}
        if cfg.scenes:  # images carrying each label (primary or extra), and each pair
            labeled, pairs = label_counts([image_labels(e) for e in entries], labels)
            for row in table:
                row["labeled"] = labeled[row["class"]]
            scene_counts = {"labels": labeled, "cooccurrence": pairs}
        shortfalls = source.shortfalls(sched)
        extra = source.extra(ledger.records)
        run_record.update(
            status="complete", models=described or (previous or {}).get("models", {}), shortfalls=shortfalls,
            counts={"kept": len(entries), "target": target, "attempts": sum(sched.attempted)},
            per_class=table, seconds=round(time.time() - started, 2), check=problems or "ok",
            timings=timer.rounded(), **scene_counts, **extra)
        state.write(run_record)
        events.write("end", kept=len(entries), target=target, shortfalls=[s["class"] for s in shortfalls])
    if cfg.report:
        from imaginarynet.report import write_report

        write_report(out.root)
    return RunResult("short" if shortfalls else "complete", kept=len(entries), target=target,
                     shortfalls=shortfalls, table=table, problems=problems,
                     cooccurrence=scene_counts.get("cooccurrence"), extra=extra)


def _redo(cfg: RunConfig, source, executor, devices: list[str]):
    """finalize.repair's `redo`: damaged attempts run again in their own units, on the inline executor's worker
    (so its models load once) or, with several workers, on one loaded here for the repair only."""
    index = {label: i for i, label in enumerate(source.streams)}
    worker = None

    def redo(unit: list[tuple[str, int]], wanted: set[tuple[str, int]]) -> set[tuple[str, int]]:
        nonlocal worker
        if worker is None:
            worker_for = getattr(executor, "worker_for", None)
            worker = worker_for(cfg, devices) if worker_for else UnitWorker(cfg, devices[0] if devices else None)
        # a record's (class, k) in the source's terms: (stream index, k)
        keys = {(index[source.stream_of({"class": label, "k": k})], k): (label, k) for label, k in unit}
        lost = worker.redo(list(keys), {key for key, pair in keys.items() if pair in wanted})
        return {keys[key] for key in lost}

    return redo


def _judge(cfg: RunConfig, out: OutputDir):
    """--dedup's decision for a scheduler (a fresh one each: decisions are replayed in attempt order)."""
    if cfg.dedup is None:
        return None
    from imaginarynet.dedup import DedupJudge

    return DedupJudge(out, cfg.dedup).accept


def _work(cfg, source, engine: str, executor, devices: list[str], sched, ledger: Ledger, timer: StageTimer,
          events: EventLog, on_first_commit=None) -> dict:
    """Hand units to the executor until the scheduler wants none; returns what the workers loaded."""
    if sched.done():
        return {}
    with Progress(sched, cfg.quiet, source.count) as progress:
        sink = RunSink(sched, ledger, timer, progress, events, on_first_commit)
        per_worker = executor(cfg, devices, lambda: sched.next_batch(cfg.batch_size), sink)
    described = dict(sink.described)
    if engine != "inline":
        described["workers"] = {"engine": cfg.engine, "devices": devices,
                                "attempts_per_worker": [per_worker[i] for i in sorted(per_worker)]}
    return described
