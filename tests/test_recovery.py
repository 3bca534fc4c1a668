"""Nothing lost, nothing half-done: a failed --overwrite keeps the old dataset, a stage that fails to load is
one line, a report a crash or a full disk cut short is written by the next command, and damaged staged images
are rewritten byte for byte.

Each case makes the failure really happen in a real process (a stage whose load raises, kill -9 at a chosen
moment, a full tmpfs); the oracle is the dataset of one uninterrupted run (the `base` fixture).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from helpers import dataset_files, kill_midway, read_jsonl, run_cli, start_cli

# A backend plugin that draws each image from its seed; SLOW_LOAD=<seconds> makes load() hang (a kill -9 target),
# BROKEN_LOAD=1 makes it raise the way a plugin meeting a real problem does. BATCH_NOISE=1 shifts every pixel
# by a function of the whole batch, as fp16 GPU kernels do (the tiny CPU models happen to be batch-invariant),
# and slows each batch down so that a kill can land mid-run.
PLUGIN = '''
import os, time
import numpy as np
from PIL import Image
from imaginarynet.backends.base import Generated


class Seeded:
    name = "seeded"
    requires = ("numpy",)

    def __init__(self, options, backend_options, runtime):
        pass

    def load(self):
        if os.environ.get("BROKEN_LOAD"):
            raise RuntimeError("CUDA out of memory.\\nTried to allocate 2.00 GiB")
        time.sleep(float(os.environ.get("SLOW_LOAD", "0")))

    def generate(self, requests):
        noise = 0
        if os.environ.get("BATCH_NOISE"):
            noise = sum(r.seed for r in requests) % 7
            time.sleep(0.05)
        return [Generated(Image.fromarray(np.random.default_rng(r.seed).integers(0, 249, (64, 64, 3), dtype=np.uint8)
                                          + np.uint8(noise))) for r in requests]

    def describe(self):
        return {"backend": "seeded"}
'''


@pytest.fixture(scope="module")
def broken(tiny, tmp_path_factory):
    """Copies of the tiny models with their weight files cut in half (they exist, so the options validate;
    loading them raises), and the plugin above on PYTHONPATH (env)."""
    d = tmp_path_factory.mktemp("broken")
    for name, weights in (("gpt2", "model.safetensors"), ("clip", "open_clip_pytorch_model.bin"),
                          ("owlv2", "model.safetensors")):
        shutil.copytree(tiny[name], d / name)
        w = d / name / weights
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    (d / "seeded_backend.py").write_text(PLUGIN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(d), os.environ.get("PYTHONPATH", "")]))
    return d, env


def finished_copy(base, dst: Path) -> Path:
    d, _, _ = base
    shutil.copytree(d / "full", dst)
    return dst


# Every stage kind with a model, failing in its load(): the option that breaks it, and what the line names.
LOAD_FAILURES = {
    "prompts": (lambda b: ["--gpt", "--gpt-model", b / "gpt2"], "GPT-2 prompts", {}),
    "backend": (lambda b: ["--backend", "seeded_backend:Seeded"], "backend 'seeded_backend:Seeded'",
                {"BROKEN_LOAD": "1"}),
    "filter": (lambda b: ["--clip", "--clip-pretrained", f"local-dir:{b / 'clip'}"], "CLIP", {}),
    "detector": (lambda b: ["--detector", b / "owlv2"], "detector", {}),
    "dedup": (lambda b: ["--dedup", 0.9, "--clip-pretrained", f"local-dir:{b / 'clip'}"], "CLIP", {}),
}


@pytest.mark.parametrize("stage", sorted(LOAD_FAILURES))
def test_an_overwrite_whose_stage_fails_to_load_keeps_the_old_dataset(base, broken, stage, tmp_path):
    """Catches the set-aside dataset deleted by the new run's clean-up (the bug: OUT kept only run.json and the
    lock), a traceback instead of one line, and a restore that misses run.json."""
    _, args, want = base
    folder, env = broken
    options, names, extra_env = LOAD_FAILURES[stage]
    out = finished_copy(base, tmp_path / "out")
    run_json = (out / "run.json").read_bytes()
    res = run_cli(args + ["--outputdir", out, "--overwrite", *options(folder)], env=dict(env, **extra_env))
    assert res.returncode in (1, 2) and "Traceback" not in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("imaginarynet: error: ") and names in last, last
    assert "failed to load" in last or "cannot load" in last, last
    assert dataset_files(out) == want and (out / "run.json").read_bytes() == run_json
    assert not list(out.glob(".imaginarynet-previous-*"))
    assert "already complete" in run_cli(args + ["--outputdir", out]).stderr


def test_a_plugin_whose_load_raises_is_one_line_exit_1_and_debug_shows_the_traceback(base, broken, tmp_path):
    _, args, _ = base
    _, env = broken
    cmd = args + ["--outputdir", tmp_path / "out", "--backend", "seeded_backend:Seeded"]
    res = run_cli(cmd, env=dict(env, BROKEN_LOAD="1"))
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "imaginarynet: error: backend 'seeded_backend:Seeded' failed to load: RuntimeError: CUDA out of memory.; "
        "nothing was lost (IMAGINARYNET_DEBUG=1 shows the traceback)")
    res = run_cli(cmd, env=dict(env, BROKEN_LOAD="1", IMAGINARYNET_DEBUG="1"))
    assert res.returncode == 1 and "Traceback" in res.stderr and "Tried to allocate 2.00 GiB" in res.stderr


def kill_while_loading(cmd: list, out: Path, env: dict) -> None:
    """Start an --overwrite whose backend hangs in load(), SIGKILL it once it has set the old run aside."""
    proc = start_cli(cmd, env=dict(env, SLOW_LOAD="60"), capture=False)
    try:
        deadline = time.time() + 120
        while not (list(out.glob(".imaginarynet-previous-*")) and (out / "run.json").exists()
                   and json.loads((out / "run.json").read_text() or "{}").get("status") == "running"):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()


def test_kill_9_before_an_overwrite_commits_then_each_command_settles_it(base, broken, tmp_path):
    """Killed in the window where the old dataset is set aside: the old command, `report` and `finalize` put
    it back, the same --overwrite command carries on the new run, and each says which in one line."""
    d, args, want = base
    _, env = broken
    out = finished_copy(base, tmp_path / "out")
    new = args + ["--outputdir", out, "--overwrite", "--backend", "seeded_backend:Seeded"]
    restored = "an interrupted --overwrite had not committed any work: restored the previous dataset"
    for command in (args + ["--outputdir", out], ["report", out], ["finalize", out]):
        kill_while_loading(new, out, env)
        assert not (out / "VOC2007").exists()  # the kill really hit the window
        res = run_cli(command, env=env)
        assert res.returncode == 0, res.stderr
        assert res.stderr.splitlines().count(restored) == 1, res.stderr
        assert dataset_files(out) == want and not list(out.glob(".imaginarynet-previous-*"))
        assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert (out / "report" / "index.html").exists()
    kill_while_loading(new, out, env)
    res = run_cli(new, env=env)  # the same command: the new run goes on
    assert res.returncode == 0, res.stderr
    assert ("an interrupted --overwrite had not committed any work: carrying on the new run (the previous "
            "dataset stays set aside until its first batch)") in res.stderr.splitlines()
    assert json.loads((out / "run.json").read_text())["options"]["backend"] == "seeded_backend:Seeded"
    assert not list(out.glob(".imaginarynet-previous-*"))


# ----------------------------------------------------------------------------- the report after a crash


def test_a_kill_after_run_json_says_complete_leaves_the_report_to_the_next_command(base, tmp_path):
    """The user's command (with its report) killed between "complete" and the report's last write: the same
    command again writes the report instead of saying only "run already complete"."""
    _, args, _ = base
    command = [a for a in args if a != "--no-report"]
    for attempt in range(5):  # the kill must land before index.html: poll hard, retry if the report won
        out = tmp_path / f"out{attempt}"
        proc = start_cli(command + ["--outputdir", out], capture=False)
        try:
            while proc.poll() is None:
                try:
                    if json.loads((out / "run.json").read_text()).get("status") == "complete":
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.002)
            proc.kill()
        finally:
            proc.wait()
        if proc.returncode == -signal.SIGKILL and not (out / "report" / "index.html").exists():
            break
    else:
        pytest.fail("the report was finished before every kill")
    res = run_cli(command + ["--outputdir", out])
    assert res.returncode == 0, res.stderr
    assert f"{out}: run already complete (30 images); writing its report, which was never finished" in res.stderr
    page = (out / "report" / "index.html").read_text()
    assert page.count("<figure") == 30 and all((out / "report" / "thumbs" / f"{i:06d}.jpg").exists()
                                               for i in range(1, 31))
    res = run_cli(command + ["--outputdir", out])
    assert "nothing to do" in res.stderr and "writing its report" not in res.stderr


def test_a_full_disk_while_the_report_is_written_is_one_line_and_the_next_run_writes_it(base, small_disk):
    d, args, _ = base
    out = small_disk / "out"
    shutil.copytree(d / "full", out)
    command = [a for a in args if a != "--no-report"] + ["--outputdir", out]
    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * free)
    res = run_cli(command)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(f"imaginarynet: error: {out}: No space left on device")
    assert not (out / "report" / "index.html").exists()
    filler.unlink()
    res = run_cli(command)
    assert res.returncode == 0 and "writing its report" in res.stderr, res.stderr
    assert (out / "report" / "index.html").read_text().count("<figure") == 30


# ----------------------------------------------------------------------------- repairs, byte for byte


def test_damaged_staged_images_are_rewritten_in_their_own_batch_byte_for_byte(base, broken, tmp_path):
    """One image deleted, one emptied, one truncated, each in a batch with an intact image, with a backend whose
    pixels depend on the batch: run again in any other batch, a repaired JPEG differs from the uninterrupted
    run's (as it did before: 1 of 3). The intact images and the ledger are left as they were."""
    _, args, _ = base
    _, env = broken
    env = dict(env, BATCH_NOISE="1")
    args = args + ["--backend", "seeded_backend:Seeded"]
    res = run_cli(args + ["--outputdir", tmp_path / "reference"], env=env)
    assert res.returncode == 0, res.stderr
    want = dataset_files(tmp_path / "reference")
    out = tmp_path / "out"
    kill_midway(args + ["--outputdir", out], out, 16, env=env)
    ledger_before = (out / ".state" / "ledger.jsonl").read_bytes()
    batches: dict[int, list[dict]] = {}
    for rec in read_jsonl(out / ".state" / "ledger.jsonl"):
        batches.setdefault(rec["b"], []).append(rec)
    pairs = [recs for recs in batches.values() if len(recs) == 2 and all(r["status"] == "kept" for r in recs)]
    assert len(pairs) >= 3
    damaged = [out / ".state" / recs[i % 2]["file"] for i, recs in enumerate(pairs[:3])]
    intact = {p: p.read_bytes() for recs in pairs[:3] for r in recs
              if (p := out / ".state" / r["file"]) not in damaged}
    damaged[0].unlink()
    damaged[1].write_bytes(b"")
    damaged[2].write_bytes(damaged[2].read_bytes()[:300])
    os.utime(next(iter(intact)), (1, 1))
    res = run_cli(args + ["--outputdir", out], env=env)
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if "missing or damaged" in line]
    assert len(warnings) == 1 and "3 staged image(s)" in warnings[0]
    assert dataset_files(out) == want
    assert (out / ".state" / "ledger.jsonl").read_bytes().startswith(ledger_before)  # no attempt redone as new
    assert all(p.read_bytes() == b for p, b in intact.items())
    assert os.stat(next(iter(intact))).st_mtime == 1  # the intact image of a re-run batch was not rewritten
