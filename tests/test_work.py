"""The unit of work and the executor contract, in seconds: the example `solid` backend needs no torch."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from helpers import read_jsonl
from PIL import Image

from imaginarynet.classes import ImageClass
from imaginarynet.config import RunConfig, validate
from imaginarynet.executors import pick
from imaginarynet.outdir import OutputDir

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


@pytest.fixture
def solid(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # spawned workers inherit sys.path

    def make(out: Path, **kw) -> RunConfig:
        opts = dict(classfile="x", classes=[ImageClass("dog", "dog"), ImageClass("cat", "cat")], outputdir=out,
                    backend="imaginarynet_solid:SolidBackend", resolution=16, report=False, quiet=True,
                    batch_size=3, num=6)
        opts.update(kw)
        return validate(RunConfig(**opts))

    return make


class OddRejecter:
    """A filter that rejects every odd attempt: a planted pattern the test knows in advance."""

    def score(self, candidates):
        return [{"accepted": c.k % 2 == 0, "k": c.k} for c in candidates]


def solid_colour(seed: int) -> tuple[int, int, int]:
    rng = random.Random(seed)
    return tuple(rng.randrange(256) for _ in range(3))


def test_run_batch_records_writes_and_names(solid, tmp_path):
    from imaginarynet import work
    from imaginarynet.plan import attempt_seed

    cfg = solid(tmp_path / "out", keep_rejected=True)
    out = OutputDir(cfg.outputdir)
    stages = work.StageSet(cfg, out)
    stages.filter = OddRejecter()
    records, writes = work.run_batch(cfg, stages, [(0, 0), (0, 1), (1, 2)], work.StageTimer(), out)
    assert [(r["class"], r["k"], r["status"]) for r in records] == [("dog", 0, "kept"), ("dog", 1, "rejected"),
                                                                    ("cat", 2, "kept")]
    assert [r["file"] for r in records] == ["images/dog/000000.jpg", None, "images/cat/000002.jpg"]
    assert all(r["prompt"] == f"A photo of a {r['class']}." and (r["width"], r["height"]) == (16, 16)
               for r in records)
    # kept images go to staging, the rejected one (with --keep-rejected) to OUT/rejected/<class>/<k>.jpg
    assert [p.relative_to(cfg.outputdir).as_posix() for p, _ in writes] == [
        ".state/images/dog/000000.jpg", "rejected/dog/000001.jpg", ".state/images/cat/000002.jpg"]
    for (path, image), rec in zip(writes, records):
        assert image.getpixel((0, 0)) == solid_colour(attempt_seed(0, rec["class"], rec["k"]))


class ContractSink:
    """Checks the executor contract as it happens."""

    def __init__(self, out: OutputDir):
        self.out, self.recorded, self.committed, self.ready_calls = out, [], [], 0

    def ready(self, described, load_seconds):
        assert described["generator"]["backend"] == "solid" and load_seconds >= 0
        self.ready_calls += 1

    def record(self, records):
        self.recorded.append(records)

    def commit(self, records, seconds, worker):
        assert records in self.recorded, "commit before record"
        for r in records:  # committed only once its images are on disk
            assert r["file"] is None or Image.open(self.out.staged(r["file"])).size == (16, 16)
        assert {"prompts", "generate", "write"} <= set(seconds)
        self.committed.append((worker, records))


@pytest.mark.parametrize("workers", [1, 2])
def test_executor_contract(solid, tmp_path, workers):
    cfg = solid(tmp_path / "out", workers=workers)
    from imaginarynet.runtime import worker_devices

    devices = worker_devices(cfg)
    name, executor = pick(cfg, devices)
    assert name == ("inline" if workers == 1 else "local")
    out = OutputDir(cfg.outputdir)
    sink = ContractSink(out)
    units = [[(0, k), (1, k)] for k in range(5)]
    issued = []

    def next_unit():
        if workers == 1:  # one worker: every issued unit is recorded before the next is chosen
            assert len(sink.recorded) == len(issued)
        if not units:
            return []
        issued.append(units.pop(0))
        return issued[-1]

    per_worker = executor(cfg, devices, next_unit, sink)
    assert sink.ready_calls == workers
    assert sorted(r["k"] for _, recs in sink.committed for r in recs) == sorted(k for k in range(5) for _ in "dc")
    assert sum(per_worker.values()) == 10 and len(per_worker) == workers
    if workers == 2:
        assert {w for w, _ in sink.committed} == {0, 1}


def test_inline_and_process_workers_write_the_same_bytes(solid, tmp_path):
    from imaginarynet.pipeline import run

    one = run(solid(tmp_path / "one", num=10), log=lambda m: None)
    two = run(solid(tmp_path / "two", num=10, workers=2), log=lambda m: None)
    assert one.outcome == two.outcome == "complete" and one.kept == two.kept == 10
    a, b = OutputDir(tmp_path / "one"), OutputDir(tmp_path / "two")
    assert read_jsonl(a.metadata) == read_jsonl(b.metadata)
    for m in read_jsonl(a.metadata):
        assert (a.root / m["file_name"]).read_bytes() == (b.root / m["file_name"]).read_bytes()


def test_a_single_listed_device_is_the_one_the_worker_gets(solid, tmp_path, monkeypatch):
    """`--devices cuda:1` (one entry) must not fall back to the default device. No GPU here: check what
    the executor hands the worker, and that the backend it builds is configured for that device."""
    from imaginarynet.executors.inline import InlineExecutor
    from imaginarynet.runtime import worker_devices

    cfg = solid(tmp_path / "out")
    import imaginarynet_solid

    built_on, init = [], imaginarynet_solid.SolidBackend.__init__

    def recording(self, options, backend_options, runtime):
        built_on.append(runtime.device)
        init(self, options, backend_options, runtime)

    monkeypatch.setattr(imaginarynet_solid.SolidBackend, "__init__", recording)
    cfg.devices = "cuda:1"  # after validation, which would refuse a device this machine lacks
    devices = worker_devices(cfg)
    name, executor = pick(cfg, devices)
    assert devices == ["cuda:1"] and name == "inline" and isinstance(executor, InlineExecutor)
    sink = ContractSink(OutputDir(cfg.outputdir))
    executor(cfg, devices, lambda: [], sink)  # builds the worker, runs nothing
    assert executor.worker.cfg.device == "cuda:1" and built_on == ["cuda:1"]
