"""Many workers, Ray actors and --shard slices make the same dataset as one worker."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import read_jsonl, run_cli, write_classfile

from imaginarynet.plan import SHARD_BLOCK, AttemptScheduler, shard_owner


def dataset_of(out: Path):
    """What must be identical: ids, classes, attempts, prompts, seeds (the kept set)."""
    return [(m["id"], m["class"], m["attempt"], m["prompt"], m["seed"]) for m in read_jsonl(out / "metadata.jsonl")]


# Every run here uses one thread per process, so float results do not depend on how many threads a
# worker got: then any executor must write the same images (same batch size, same device).
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1")


def cli(args, **kw):
    return run_cli(args, env=ONE_THREAD, **kw)


def assert_same_dataset(a: Path, b: Path):
    assert dataset_of(a) == dataset_of(b)
    rows_a, rows_b = read_jsonl(a / "metadata.jsonl"), read_jsonl(b / "metadata.jsonl")
    # Which units --shard slices run depends on when each slice sees the other's ledger, so an attempt may be
    # scored by CLIP in a unit of 1 rather than 3: its probability may move by float noise in the 6th digit.
    # Everything else in the rows is exact, and so are the images.
    for ra, rb in zip(rows_a, rows_b):
        assert {k: v for k, v in ra.items() if k != "clip"} == {k: v for k, v in rb.items() if k != "clip"}
        if ra.get("clip") is not None:
            assert ra["clip"]["accepted"] == rb["clip"]["accepted"] and ra["clip"]["top1"] == rb["clip"]["top1"]
            for key in ("prob", "cos"):
                assert ra["clip"][key] == pytest.approx(rb["clip"][key], abs=3e-6)
    for m in read_jsonl(a / "metadata.jsonl"):
        assert (a / m["file_name"]).read_bytes() == (b / m["file_name"]).read_bytes(), m["id"]


@pytest.fixture(scope="module")
def setup(tiny, tiny_sd_args, tmp_path_factory):
    d = tmp_path_factory.mktemp("scale")
    classes = write_classfile(d / "c.txt", ["dog", "cat", "bird"])
    plain = ["--num", 18, "--classfile", classes, "--batch-size", 3, *tiny_sd_args]
    clip = plain + ["--clip", "--clip-pretrained", f"local-dir:{tiny['clip']}", "--threshold", 0.5]
    single = {}
    for name, args in (("plain", plain), ("clip", clip)):
        out = d / f"single-{name}"
        res = cli(args + ["--outputdir", out])
        assert res.returncode == 0, res.stderr
        single[name] = out
    statuses = {r["status"] for r in read_jsonl(single["clip"] / ".state" / "ledger.jsonl")}
    assert statuses == {"kept", "rejected"}  # the filter really refills
    return d, {"plain": plain, "clip": clip}, single


@pytest.mark.parametrize("kind", ["plain", "clip"])
def test_two_local_workers(setup, kind):
    d, args, single = setup
    out = d / f"workers-{kind}"
    res = cli(args[kind] + ["--outputdir", out, "--workers", 2])
    assert res.returncode == 0, res.stderr
    assert_same_dataset(single[kind], out)
    workers = json.loads((out / "run.json").read_text())["models"]["workers"]
    assert workers["devices"] == ["cpu", "cpu"] and sum(workers["attempts_per_worker"]) >= 18
    assert min(workers["attempts_per_worker"]) > 0
    timings = json.loads((out / "run.json").read_text())["timings"]
    assert timings["load"] > 0 and timings["generate"] > 0  # the workers' own stage times reach run.json


@pytest.mark.parametrize("kind", ["plain", "clip"])
def test_ray_local_cluster(setup, kind):
    import ray  # noqa: F401  (a missing ray fails the test, it does not skip it)

    d, args, single = setup
    out = d / f"ray-{kind}"
    res = cli(args[kind] + ["--outputdir", out, "--engine", "ray", "--workers", 2], timeout=600)
    assert res.returncode == 0, res.stderr
    assert_same_dataset(single[kind], out)
    assert json.loads((out / "run.json").read_text())["models"]["workers"]["engine"] == "ray"


@pytest.mark.parametrize("kind", ["plain", "clip"])
def test_shards_then_finalize(setup, kind):
    d, args, single = setup
    out = d / f"shards-{kind}"
    procs = [subprocess.Popen([sys.executable, "-m", "imaginarynet", *map(str, args[kind]), "--outputdir", str(out),
                               "--shard", f"{i}/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=ONE_THREAD)
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    markers = sorted(p.name for p in (out / ".state" / "shards").glob("done-*"))
    assert markers == ["done-0-of-2", "done-1-of-2"]
    assert json.loads((out / "run.json").read_text())["status"] == "complete"  # the last shard assembled it
    assert_same_dataset(single[kind], out)
    shard_attempts = [len(read_jsonl(p)) for p in sorted((out / ".state" / "shards").glob("ledger-*"))]
    assert all(n > 0 for n in shard_attempts)  # both slices did work
    assert cli(["check", out]).returncode == 0


def test_a_shard_slice_runs_on_its_own_workers(setup):
    """--shard honours --workers (and --devices): a SLURM task holding several devices uses them all."""
    d, args, single = setup
    out = d / "shard-workers"
    first = cli(args["plain"] + ["--outputdir", out, "--shard", "1/2"])
    assert first.returncode == 0 and "the last shard to finish assembles the dataset" in first.stderr
    last = cli(args["plain"] + ["--outputdir", out, "--shard", "0/2", "--workers", 2])
    assert last.returncode == 0, last.stderr
    workers = json.loads((out / "run.json").read_text())["models"]["workers"]
    assert workers["devices"] == ["cpu", "cpu"] and min(workers["attempts_per_worker"]) > 0
    assert_same_dataset(single["plain"], out)


def test_shard_alone_then_finalize_command_fills_the_rest(setup):
    """Only slice 0 of 2 ever runs: `finalize` runs what is missing and assembles the dataset."""
    d, args, single = setup
    out = d / "shard-alone"
    res = cli(args["plain"] + ["--outputdir", out, "--shard", "0/2"])
    assert res.returncode == 0 and "the last shard to finish assembles the dataset" in res.stderr
    assert not (out / "metadata.jsonl").exists()
    res = cli(["finalize", out])
    assert res.returncode == 0, res.stderr
    assert_same_dataset(single["plain"], out)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _worker_pids(pid: int) -> list[int]:
    """Spawned workers: the children running the multiprocessing entry point (not its resource tracker)."""
    out = []
    for child in _children(pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            out.append(child)
    return out


def test_killed_worker_is_reported_and_the_rerun_completes(setup):
    d, args, single = setup
    out = d / "killed-worker"
    cmd = [sys.executable, "-m", "imaginarynet", *map(str, args["plain"]), "--outputdir", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
    ledger = out / ".state" / "ledger.jsonl"
    deadline = time.time() + 180
    while not (ledger.exists() and ledger.read_bytes().count(b"\n") >= 3):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    workers = _worker_pids(proc.pid)
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    last = err.strip().splitlines()[-1]
    assert "died with exit code -9" in last and "run the same command again to resume" in last
    assert "Traceback" not in err
    res = cli(args["plain"] + ["--outputdir", out, "--workers", 2])
    assert res.returncode == 0, res.stderr
    assert_same_dataset(single["plain"], out)


def test_scheduler_fills_gaps_first_and_respects_shard_ownership():
    # attempts 0, 2 finished (1 was in flight when a run died): 1 is issued before new ones
    recs = [{"class": "a", "k": 0, "status": "kept"}, {"class": "a", "k": 2, "status": "rejected"}]
    sched = AttemptScheduler([3], [12], ["a"], {"a": recs})
    assert sched.next_batch(3) == [(0, 1), (0, 3)]  # 0 kept + 2 optimistic = 3
    sched.record([{"class": "a", "k": 1, "status": "rejected"}])
    assert sched.next_batch(3) == [(0, 4)]  # 3 still in flight
    # a shard issues only its own blocks, and counts the others' unfinished attempts as in flight
    assert SHARD_BLOCK == 8  # the numbers below are written out for blocks of 8 attempts
    shards = [AttemptScheduler([20], [80], ["a"], {}, owns=lambda c, k, i=i: shard_owner(c, k, 2) == i)
              for i in range(2)]
    issued = [[k for _, k in s.next_batch(100)] for s in shards]
    # quota 20, nothing finished: a sequential run wants attempts 0..19; blocks of 8 alternate 0, 1, 0
    assert issued == [list(range(0, 8)) + list(range(16, 20)), list(range(8, 16))]
    # with a 3-class plan, each class's first block goes to another shard (small quotas still spread)
    firsts = [AttemptScheduler([4] * 3, [16] * 3, ["a", "b", "c"], {},
                               owns=lambda c, k, i=i: shard_owner(c, k, 3) == i).next_batch(100) for i in range(3)]
    assert firsts == [[(0, 0), (0, 1), (0, 2), (0, 3)], [(1, 0), (1, 1), (1, 2), (1, 3)],
                      [(2, 0), (2, 1), (2, 2), (2, 3)]]
