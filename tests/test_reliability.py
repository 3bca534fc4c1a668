"""Pre-emption, crashes, full disks, concurrent runs and hostile input lose nothing.

Every case kills, signals, starves or corrupts a real process or file; the oracle is always the
dataset of one uninterrupted run with the same options (bytes of every file it wrote).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import (
    dataset_files,
    kill_midway,
    ledger_lines,
    read_jsonl,
    run_cli,
    run_main,
    start_cli,
    wait_for_lines,
    write_classfile,
)


def assert_same_up_to_float_noise(got: dict[str, bytes], want: dict[str, bytes]) -> None:
    """Several CPU workers split the cores, so their pixels differ by float noise from one process's:
    every file but the JPEGs is byte-identical, the JPEGs decode to the same picture."""
    import io

    import numpy as np
    from PIL import Image

    assert got.keys() == want.keys()
    for name in want:
        if name.endswith(".jpg"):
            a, b = (np.asarray(Image.open(io.BytesIO(x[name])), float) for x in (got, want))
            assert np.abs(a - b).mean() < 1.0, name
        else:
            assert got[name] == want[name], name


# ---------------------------------------------------------------------------------------- kill -9


def test_kill_9_at_random_moments_then_resume_gives_the_same_dataset(base):
    """SIGKILL at seeded random moments across the whole run, the same command again each time, until it
    finishes: the bytes equal the uninterrupted run's. The moments are drawn as progress points (a ledger
    line count, then a random fraction of a second), so every phase is hit whatever the machine's speed:
    loading, generating, and assembling (ledger complete: finalize, run.json, metadata)."""
    d, args, want = base
    out = d / "random-kills"
    rng = random.Random(20261205)
    targets = [0] + sorted(rng.sample(range(1, 30), 7)) + [30, 30, 30]  # 30 lines: all attempts are in
    phases = []
    for target in targets:
        before = ledger_lines(out)
        proc = start_cli(args + ["--outputdir", out])
        deadline = time.time() + 120
        while ledger_lines(out) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is not None:
            assert proc.wait() == 0, proc.communicate()[1]
            break
        lines = ledger_lines(out)
        proc.kill()
        proc.wait()
        phases.append("assembling" if lines >= 30 else "loading" if lines == before else "generating")
    res = run_cli(args + ["--outputdir", out])  # finishes, or finds the run complete
    assert res.returncode == 0, res.stderr
    print("kill points:", phases)
    assert {"loading", "generating", "assembling"} <= set(phases), phases
    assert dataset_files(out) == want
    assert not list(out.rglob(".imaginarynet-tmp-*")), "a temporary file survived the next start"


def test_kill_9_of_a_multi_worker_parent_then_resume(base):
    d, args, want = base
    out = d / "killed-parent"
    kill_midway(args + ["--outputdir", out, "--workers", 2], out, 8)
    res = run_cli(args + ["--outputdir", out, "--workers", 2])
    assert res.returncode == 0, res.stderr
    assert_same_up_to_float_noise(dataset_files(out), want)


def test_kill_9_of_a_shard_in_its_slice_then_both_slices(base):
    d, args, want = base
    out = d / "killed-shard"
    kill_midway(args + ["--outputdir", out, "--shard", "0/2"], out, 4, ledger="shards/ledger-0-of-2.jsonl")
    for i in (0, 1):
        res = run_cli(args + ["--outputdir", out, "--shard", f"{i}/2"])
        assert res.returncode == 0, res.stderr
    assert dataset_files(out) == want


def test_a_torn_staged_image_is_generated_again(base):
    """A power loss can leave the ledger naming an empty or truncated image: resume redoes that attempt."""
    d, args, want = base
    out = d / "torn"
    kill_midway(args + ["--outputdir", out], out, 10)
    kept = [r for r in read_jsonl(out / ".state" / "ledger.jsonl") if r["status"] == "kept"]
    torn, gone = out / ".state" / kept[0]["file"], out / ".state" / kept[1]["file"]
    torn.write_bytes(torn.read_bytes()[:100])
    gone.unlink()
    res = run_cli(args + ["--outputdir", out])
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if "missing or damaged" in line]
    assert len(warnings) == 1 and "2 staged image(s)" in warnings[0]
    assert dataset_files(out) == want


# ------------------------------------------------------------------------------------- signals


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_stop_cleanly_and_resume(base, sig, code):
    d, args, want = base
    out = d / f"signal-{sig.name}"
    proc = start_cli(args + ["--outputdir", out])
    wait_for_lines(proc, out, 6)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert lines[-1] == f"interrupted by {sig.name}; finished work is kept: run the same command again to resume"
    committed = ledger_lines(out)
    assert committed >= 6  # nothing finished was thrown away
    res = run_cli(args + ["--outputdir", out])
    assert res.returncode == 0, res.stderr
    assert dataset_files(out) == want


def test_a_second_signal_exits_at_once(base):
    d, args, _ = base
    out = d / "two-signals"
    proc = start_cli(args + ["--outputdir", out])
    wait_for_lines(proc, out, 2)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode in (143, -signal.SIGTERM)


# --------------------------------------------------------------------------------- full disk


def test_disk_full_is_one_line_and_the_same_command_resumes(base, small_disk):
    d, args, want = base
    out = small_disk / "out"
    filler = small_disk / "filler"
    # leave room for the run's start but not for its images (30 JPEGs of ~2 kB, the ledger, the dataset)
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * (free - 40_000))
    res = run_cli(args + ["--outputdir", out])
    assert res.returncode == 1, res.stderr
    errors = [line for line in res.stderr.splitlines() if "error" in line.lower()]
    assert "Traceback" not in res.stderr and len(errors) == 1, res.stderr
    assert res.stderr.strip().splitlines()[-1] == errors[0]  # after the progress bar, one line
    assert errors[0].startswith(f"imaginarynet: error: {out}: No space left on device")
    committed = read_jsonl(out / ".state" / "ledger.jsonl") if (out / ".state" / "ledger.jsonl").exists() else []
    filler.unlink()
    res = run_cli(args + ["--outputdir", out])
    assert res.returncode == 0, res.stderr
    assert read_jsonl(out / ".state" / "ledger.jsonl")[:len(committed)] == committed  # nothing committed lost
    assert dataset_files(out) == want
    assert not list(out.rglob(".imaginarynet-tmp-*"))


def test_read_only_output_folder_is_one_line(base, tmp_path):
    d, args, _ = base
    out = tmp_path / "ro"
    res = run_cli(args[:2] + ["--outputdir", out] + args[2:])
    assert res.returncode == 0
    (out / "run.json").write_text((out / "run.json").read_text().replace('"complete"', '"running"'))
    ro = tmp_path / "ro-mount"
    ro.mkdir()
    assert subprocess.run(["mount", "--bind", "-o", "ro", str(out), str(ro)]).returncode == 0
    try:
        res = run_cli(args + ["--outputdir", ro])
    finally:
        subprocess.run(["umount", "-l", str(ro)])
    assert res.returncode in (1, 2) and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and str(ro) in res.stderr, res.stderr


# -------------------------------------------------------------------------------- concurrency


def test_a_second_run_on_the_same_folder_is_refused_and_no_lock_outlives_a_kill(base):
    d, args, want = base
    out = d / "locked"
    first = start_cli(args + ["--outputdir", out])
    wait_for_lines(first, out, 2)
    os.kill(first.pid, signal.SIGSTOP)  # a slow run: it holds the lock however long the probes below take
    second = run_cli(args + ["--outputdir", out])
    host = os.uname().nodename
    assert second.returncode == 2
    assert second.stderr.strip() == (f"imaginarynet: error: {out} is in use by another imaginarynet run "
                                     f"(pid {first.pid} on {host})")
    assert run_cli(["finalize", out]).returncode == 2
    assert run_cli(["export", out, "--format", "coco"]).returncode == 2
    assert run_cli(args + ["--outputdir", out, "--shard", "0/2"]).returncode == 2
    first.kill()
    first.wait()
    res = run_cli(args + ["--outputdir", out])  # the OS released the killed run's lock
    assert res.returncode == 0, res.stderr
    assert dataset_files(out) == want


def test_a_crashed_shard_assembler_does_not_block_the_next(base):
    """The finalize lock is an flock: held by a dead process, it is free."""
    d, args, want = base
    out = d / "assembler"
    for i in (0, 1):
        assert run_cli(args + ["--outputdir", out, "--shard", f"{i}/2"]).returncode == 0
    # as if the assembler had crashed: the dataset is gone and run.json says running
    run = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps(dict(run, status="running")))
    (out / "metadata.jsonl").unlink()
    res = run_cli(args + ["--outputdir", out, "--shard", "1/2"])
    assert res.returncode == 0, res.stderr
    assert dataset_files(out) == want


# ------------------------------------------------------------------------ options and refusals


def test_a_run_that_fails_loading_models_binds_no_options(base, tmp_path):
    d, args, want = base
    out = d / "typo"
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    res = run_cli(args + ["--outputdir", out, "--gpt", "--gpt-model", empty])
    assert res.returncode == 2 and "cannot load GPT-2 model" in res.stderr
    res = run_cli(args + ["--outputdir", out])  # the corrected command starts normally
    assert res.returncode == 0, res.stderr
    assert dataset_files(out) == want


def test_overwrite_keeps_the_old_dataset_until_the_new_run_commits(base, tmp_path):
    d, args, want = base
    out = tmp_path / "overwrite"
    assert run_cli(args + ["--outputdir", out]).returncode == 0
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    res = run_cli(args + ["--outputdir", out, "--overwrite", "--seed", 3, "--sd-model", empty])
    assert res.returncode == 2, res.stderr
    assert dataset_files(out) == want  # the failed overwrite left the old dataset in place
    assert run_cli(args + ["--outputdir", out]).stderr.count("already complete") == 1
    assert not list(out.glob(".imaginarynet-previous-*"))
    res = run_cli(args + ["--outputdir", out, "--overwrite", "--seed", 3])
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "run.json").read_text())["options"]["seed"] == 3
    assert not list(out.glob(".imaginarynet-previous-*"))


def test_plain_run_continues_a_dataset_that_shards_started(base):
    d, args, want = base
    out = d / "mixed"
    res = run_cli(args + ["--outputdir", out, "--shard", "0/2"])
    assert res.returncode == 0, res.stderr
    shard_attempts = read_jsonl(out / ".state" / "shards" / "ledger-0-of-2.jsonl")
    res = run_cli(args + ["--outputdir", out])
    assert res.returncode == 0, res.stderr
    ledger = {(r["class"], r["k"]): r for r in read_jsonl(out / ".state" / "ledger.jsonl")}
    assert len(ledger) == len(read_jsonl(out / ".state" / "ledger.jsonl"))  # nothing generated twice
    assert all((r["class"], r["k"]) in ledger for r in shard_attempts)
    assert dataset_files(out) == want


def test_repeated_ledger_records_give_one_id_per_attempt(tmp_path):
    from imaginarynet.classes import ImageClass
    from imaginarynet.dataset import select
    from imaginarynet.ledger import Ledger

    ledger = Ledger(tmp_path / "ledger.jsonl")
    rec = {"class": "dog", "prompt": "p", "seed": 1, "width": 8, "height": 8, "score": None}
    ledger.append_batch([dict(rec, k=0, status="kept", file="a.jpg"), dict(rec, k=1, status="rejected", file=None)])
    ledger.append_batch([dict(rec, k=0, status="rejected", file=None), dict(rec, k=1, status="kept", file="b.jpg")])
    entries = select([ImageClass("dog", "dog")], [5], Ledger(tmp_path / "ledger.jsonl").by_class())
    assert [(e.id, e.k, e.staged) for e in entries] == [("000001", 0, "a.jpg")]  # the first record wins


def test_the_first_q_accepted_attempts_in_attempt_order_make_the_dataset(tmp_path):
    """More accepted attempts than the quota, committed out of attempt order (a later block first, as a shard
    that ran ahead commits it): the first q by k are kept. Catches keeping the last q, or the first q committed."""
    from imaginarynet.classes import ImageClass
    from imaginarynet.dataset import select
    from imaginarynet.ledger import Ledger

    ledger = Ledger(tmp_path / "ledger.jsonl")
    rec = {"prompt": "p", "seed": 1, "width": 8, "height": 8, "score": None}
    kept = {"dog": {1, 2, 4, 5, 6, 7}, "cat": {0, 1, 2, 3, 4, 5, 6, 7}}
    quotas = {"dog": 3, "cat": 2}
    for block in ([6, 7], [4, 5], [0, 1], [2, 3]):
        ledger.append_batch([dict(rec, **{"class": label}, k=k, status="kept" if k in kept[label] else "rejected",
                                  file=f"{label}/{k}.jpg" if k in kept[label] else None)
                             for label in ("cat", "dog") for k in block])
    entries = select([ImageClass("dog", "dog"), ImageClass("cat", "cat")], [quotas["dog"], quotas["cat"]],
                     Ledger(tmp_path / "ledger.jsonl").by_class())
    want = [(label, k) for label in ("dog", "cat") for k in sorted(kept[label])[:quotas[label]]]
    assert [(e.label, e.k) for e in entries] == want
    assert [e.id for e in entries] == [f"{i:06d}" for i in range(1, len(want) + 1)]


def test_more_accepted_attempts_than_the_quota_committed_first_give_the_sequential_dataset(base, tmp_path):
    """A ledger holding accepted attempts beyond the quota, committed before the earlier ones (what a shard that
    ran ahead leaves): assembling it gives the sequential run's dataset, byte for byte. The extra attempts are
    real: the same options with 4 more images per class make attempts 10..13 of each class."""
    import shutil

    from imaginarynet.ledger import Ledger

    d, args, want = base
    ahead = tmp_path / "ahead"
    more = [42 if a == 30 else a for a in args]
    assert run_cli(more + ["--outputdir", ahead]).returncode == 0
    out = tmp_path / "out"
    shutil.copytree(d / "full", out)
    extra = [r for r in read_jsonl(ahead / ".state" / "ledger.jsonl") if r["k"] >= 10 and r["status"] == "kept"]
    assert len(extra) == 12
    for r in extra:
        shutil.copy(ahead / ".state" / r["file"], out / ".state" / r["file"])
    original = Ledger(out / ".state" / "ledger.jsonl").records
    (out / ".state" / "ledger.jsonl").unlink()
    ledger = Ledger(out / ".state" / "ledger.jsonl")
    strip = lambda recs: [{k: v for k, v in r.items() if k not in ("b", "n")} for r in recs]  # noqa: E731
    ledger.append_batch(strip(extra))
    for b in sorted({r["b"] for r in original}):
        ledger.append_batch(strip([r for r in original if r["b"] == b]))
    run = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps(dict(run, status="running")))  # as if the assembler was killed
    res = run_cli(["finalize", out])
    assert res.returncode == 0, res.stderr
    got = dataset_files(out)
    used = {name: got.pop(name) for name in list(got) if name.startswith("prompts/")}  # every attempt's prompt
    assert got == {name: data for name, data in want.items() if not name.startswith("prompts/")}
    assert all(len(text.splitlines()) == 14 for text in used.values())


# ------------------------------------------------------------------------------------ bad input

BAD = {
    "template attribute": (["--template", "a {name.x}"], "--template may only contain {name}"),
    "template method": (["--template", "a {name.upper}"], "--template may only contain {name}"),
    "template conversion": (["--template", "a {name!r}"], "--template may only contain {name}"),
    "template positional": (["--template", "a {0} {name}"], "--template may only contain {name}"),
    "template unbalanced": (["--template", "a {name"], "--template may only contain {name}"),
    "log-json missing folder": (["--log-json", "/nonexistent-dir/events.jsonl"], "does not exist"),
    "device gpu": (["--device", "gpu"], "unknown device 'gpu'"),
    "device cuda:x": (["--device", "cuda:x"], "unknown device 'cuda:x'"),
    "device cuda:7": (["--device", "cuda:7"], "device cuda:7 does not exist here"),
    "devices list": (["--devices", "cpu,cuda:7"], "device cuda:7 does not exist here"),
    "temperature 0": (["--backend", "dalle-mini", "--temperature", "0"], "--temperature must be above 0"),
    "temperature negative": (["--backend", "dalle-mini", "--temperature", "-1"], "--temperature must be above 0"),
    "top-p above 1": (["--backend", "dalle-mini", "--top-p", "1.5"], "--top-p must be within (0, 1]"),
    "top-p 0": (["--backend", "dalle-mini", "--top-p", "0"], "--top-p must be within (0, 1]"),
    "top-k 0": (["--backend", "dalle-mini", "--top-k", "0"], "--top-k must be at least 1"),
    "negative guidance": (["--guidance", "-1"], "--guidance must not be negative"),
    "negative condition scale": (["--backend", "dalle-mini", "--condition-scale", "-2"],
                                 "--condition-scale must not be negative"),
    "overwrite with shard": (["--overwrite", "--shard", "0/2"], "--overwrite cannot be combined with --shard"),
    "clip weights ignored": (["--clip", "--clip-model", "local-dir:/tmp", "--clip-pretrained", "laion2b_s34b_b79k"],
                             "--clip-pretrained laion2b_s34b_b79k would be ignored"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_exit_2_nothing_written(case, tiny, tmp_path, capsys):
    args, message = BAD[case]
    classes = write_classfile(tmp_path / "c.txt", ["dog", "cat"])
    out = tmp_path / "out"
    code = run_main(["--num", 2, "--classfile", classes, "--outputdir", out, "--sd-model", tiny["sd"], *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (out / "run.json").exists() and not (out / ".state").exists()


def test_gpt_max_tokens_above_the_context_is_refused(tiny, tmp_path, capsys):
    context = json.loads((Path(tiny["gpt2"]) / "config.json").read_text())["n_positions"]
    classes = write_classfile(tmp_path / "c.txt", ["dog"])
    code = run_main(["--num", 1, "--classfile", classes, "--outputdir", tmp_path / "out", "--sd-model", tiny["sd"],
                     "--gpt", "--gpt-model", tiny["gpt2"], "--gpt-max-tokens", context + 1])
    err = capsys.readouterr().err
    assert code == 2 and f"above {tiny['gpt2']}'s context of {context} tokens" in err


@pytest.mark.parametrize("labels, message", [(["dog", "."], "bad label '.'"), (["dog", ".."], "bad label '..'"),
                                             (["Dog", "dog"], "differs only in case")])
def test_bad_labels(labels, message, tiny, tmp_path, capsys):
    classes = write_classfile(tmp_path / "c.txt", labels)
    code = run_main(["--num", 2, "--classfile", classes, "--outputdir", tmp_path / "out", "--sd-model", tiny["sd"]])
    assert code == 2 and message in capsys.readouterr().err


def test_a_short_plugin_is_an_error_naming_it(tmp_path, monkeypatch, capsys):
    (tmp_path / "short_plugin.py").write_text(
        "from PIL import Image\nfrom imaginarynet.backends.base import Generated\n"
        "class Short:\n    name = 'short'\n    def __init__(self, options, backend_options, runtime): pass\n"
        "    def load(self): pass\n"
        "    def describe(self): return {}\n"
        "    def generate(self, requests): return [Generated(Image.new('RGB', (8, 8)))] * (len(requests) - 1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    classes = write_classfile(tmp_path / "c.txt", ["dog"])
    code = run_main(["--num", 2, "--classfile", classes, "--outputdir", tmp_path / "out", "--backend",
                     "short_plugin:Short", "--batch-size", 2, "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and "backend 'short_plugin:Short' returned 1 images for 2 prompts" in err
    assert not (tmp_path / "out" / "metadata.jsonl").exists()


# ------------------------------------------------------------- commands on broken output folders


@pytest.fixture(scope="module")
def finished(base, tmp_path_factory):
    d, args, _ = base
    out = tmp_path_factory.mktemp("finished") / "out"
    assert run_cli(args + ["--outputdir", out]).returncode == 0
    return out


def copy_of(out: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(out, dst, symlinks=True)
    return dst


@pytest.mark.parametrize("what", ["xml missing coordinate", "xml size not an integer", "coco broken json",
                                  "coco wrong shape", "detic broken json"])
def test_check_on_malformed_files_reports_and_never_raises(finished, tmp_path, what):
    out = copy_of(finished, tmp_path)
    fmt = "voc"
    if what.startswith("xml"):
        target = out / "VOC2007" / "Annotations" / "000002.xml"
        xml = target.read_text()
        target.write_text(xml.replace("<xmax>64</xmax>", "") if "coordinate" in what
                          else xml.replace("<width>64</width>", "<width>64.5</width>"))
    elif what.startswith("coco"):
        assert run_cli(["export", out, "--format", "coco"]).returncode == 0
        target = out / "exports" / "coco_trainval.json"
        target.write_text("{broken" if "broken" in what else json.dumps({"images": 1, "annotations": [],
                                                                        "categories": []}))
        fmt = "coco"
    else:
        target = out / "exports" / "detic" / "image_info.json"
        target.parent.mkdir(parents=True)
        for name in ("image_info.json", "cat_info.json", "clip_a+cname.npy"):
            (target.parent / name).write_text("{broken")
        fmt = "detic"
    res = run_cli(["check", out, "--format", fmt])
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert target.relative_to(out).as_posix() in res.stdout


DAMAGED = [(command, damage) for command in (["finalize"], ["export", "--format", "coco"], ["report"], ["proposals"])
           for damage in ("run.json corrupt", "run.json missing", "metadata corrupt", "metadata missing")
           if not (command == ["finalize"] and damage.startswith("metadata"))]  # finalize rewrites it: below


@pytest.mark.parametrize("command, damage", DAMAGED)
def test_commands_on_a_damaged_folder_are_one_line_exit_2(finished, tmp_path, damage, command):
    out = copy_of(finished, tmp_path)
    target = out / ("run.json" if damage.startswith("run") else "metadata.jsonl")
    if damage.endswith("missing"):
        target.unlink()
    else:
        target.write_text('{"id": "000001", "truncated')
    res = run_cli([command[0], out, *command[1:]])
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_finalize_rewrites_a_lost_metadata_file(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    want = (out / "metadata.jsonl").read_bytes()
    run = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps(dict(run, status="running")))
    (out / "metadata.jsonl").write_text("garbage")
    res = run_cli(["finalize", out])
    assert res.returncode == 0, res.stderr
    assert (out / "metadata.jsonl").read_bytes() == want


def test_foreign_files_in_rejected_and_state_are_ignored(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    (out / "rejected" / "dog").mkdir(parents=True)
    (out / "rejected" / "dog" / "notes.jpg").write_bytes(b"not mine")
    (out / ".state" / "images" / "dog" / "README.txt").write_text("a user's note")
    (out / ".state" / "something.json").write_text("{}")
    assert run_cli(["report", out]).returncode == 0
    res = run_cli(["check", out])
    assert res.returncode == 0, res.stdout


def test_the_report_opens_the_ledger_read_only(finished, tmp_path):
    """A report run next to a writer must never cut the writer's last line: a torn tail stays as it is."""
    out = copy_of(finished, tmp_path)
    ledger = out / ".state" / "ledger.jsonl"
    ledger.write_bytes(ledger.read_bytes() + b'{"class": "dog", "k": 99, "n": 2')  # a batch being written
    before = ledger.read_bytes()
    assert run_cli(["report", out]).returncode == 0
    assert ledger.read_bytes() == before


def test_temporaries_of_killed_writes_are_removed_at_the_next_start(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    run = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps(dict(run, status="running")))  # as if killed in finalize
    leftovers = [out / ".state" / "images" / "dog" / ".imaginarynet-tmp-4242-000000.jpg",
                 out / ".state" / "tmp" / ".imaginarynet-tmp-4242-000001.xml",
                 out / ".imaginarynet-tmp-4242-metadata.jsonl"]
    for p in leftovers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    want = dataset_files(out)
    res = run_cli(["finalize", out])
    assert res.returncode == 0, res.stderr
    assert not [p for p in leftovers if p.exists()]
    assert dataset_files(out) == want
