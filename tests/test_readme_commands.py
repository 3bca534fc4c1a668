"""Every command the README shows in a code block, run as a user types it, and what the user then looks at.

The commands are read from README.md itself, so a command added there without a way to run it here fails
`test_every_readme_command_is_run_here`. Only what cannot exist on this machine is substituted: the image
count (--num 10000 becomes 6, --per-class 500 becomes 2), the class file (3 classes), the output folder, and
the model weights (the tiny models, given with the flags the README documents for local folders, plus
--steps 2 --resolution 64 when the line sets no --steps). No --no-report, --quiet or --batch-size is added.
Other commands (check, export, report, proposals, annotate, ...) are run as typed in their own test modules.
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from helpers import FIXTURES, read_jsonl, report_rows, run_cli, write_classfile

README = Path(__file__).resolve().parents[1] / "README.md"
LABELS = ["dog", "cat", "bird"]

# README commands that cannot run on a machine without GPUs or a Ray cluster, and the test that runs the same
# code path with what this machine has.
NOT_HERE = {
    "imaginarynet --num 10000 --classfile voc --engine ray --devices cuda:0,cuda:1,cuda:2,cuda:3 "
    "--ray-address auto --outputdir /shared/out": "needs 4 GPUs and a Ray cluster; test_scale_out.py::"
    "test_ray_local_cluster runs --engine ray on local CPU actors",
}


def readme_commands() -> list[str]:
    """`imaginarynet ...` lines of the README's code blocks (continuations joined, comments dropped)."""
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S) + ["\n".join(
        line[4:] for line in text.splitlines() if line.startswith("    imaginarynet"))]
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            line = re.sub(r"^(HF_HUB_OFFLINE=1 |python -m )", "", line)
            if line.startswith("imaginarynet"):
                commands.append(" ".join(line.split()))
    return list(dict.fromkeys(commands))


COMMANDS = readme_commands()
GENERATE = [c for c in COMMANDS if c not in NOT_HERE and not re.match(r"imaginarynet (download|cooccurrence)", c)]


def test_every_readme_command_is_run_here():
    """Catches a README command that no test runs: each is generate (run below), download or cooccurrence
    (run below), or named in NOT_HERE with the test that covers its path."""
    assert len(COMMANDS) >= 8, COMMANDS  # the parser really finds the README's commands
    handled = set(GENERATE) | set(NOT_HERE) | {c for c in COMMANDS if re.match(r"imaginarynet (download|cooc)", c)}
    assert set(COMMANDS) <= handled
    assert set(NOT_HERE) <= set(COMMANDS), "NOT_HERE names a command the README no longer shows"


@pytest.fixture(scope="module")
def models(tiny):
    return dict(tiny, dalle=FIXTURES / "dalle_mini")


def as_run_here(command: str, out: Path, classes: Path, models: dict, extra: dict | None = None) -> list[str]:
    """The README command with only the substitutions the module docstring lists."""
    args = shlex.split(command)[1:]
    subst = {"--num": "6", "--per-class": "2", "--classfile": str(classes), "--outputdir": str(out), **(extra or {})}
    for i, a in enumerate(args[:-1]):
        if a in subst:
            args[i + 1] = subst[a]
    backend = args[args.index("--backend") + 1] if "--backend" in args else "stablediffusion"
    if backend == "dalle-mini":
        args += ["--dalle-model", str(models["dalle"] / "dallebart"), "--vqgan-model", str(models["dalle"] / "vqgan")]
    elif args[0] != "download" or backend == "stablediffusion":
        args += ["--sd-model", str(models["sd"])] + ([] if "--steps" in args else ["--steps", "2"])
        args += [] if args[0] == "download" else ["--resolution", "64"]
    if "--gpt" in args:
        args += ["--gpt-model", str(models["gpt2"])]
    if "--clip" in args:
        args += ["--clip-pretrained", f"local-dir:{models['clip']}"]
    return args


def slices(args: list[str]) -> list[list[str]]:
    """A SLURM array line: every task of a 2-task array, in turn (the last one assembles)."""
    if not any("SLURM_ARRAY_TASK_ID" in a for a in args):
        return [args]
    return [[a.replace("${SLURM_ARRAY_TASK_ID}", str(i)).replace("${SLURM_ARRAY_TASK_COUNT}", "2") for a in args]
            for i in (0, 1)]


@pytest.mark.parametrize("command", GENERATE)
def test_readme_generate_command(command, models, tmp_path):
    """What the user sees: exit 0, the progress bar and summary table, the closing "N/M images in OUT" line, a
    dataset torchvision loads and `check` accepts, and the report with a row per class."""
    from helpers import load_voc

    from imaginarynet.config import DEFAULTS

    classes = write_classfile(tmp_path / "c.txt", LABELS)
    out = tmp_path / ("out" if "--outputdir" in command else DEFAULTS["outputdir"])  # run in tmp_path: ./output
    extra = {}
    if "--cooccurrence" in command:  # the README makes this file with `imaginarynet cooccurrence` first
        extra["--cooccurrence"] = str(tmp_path / "pairs.json")
        (tmp_path / "pairs.json").write_text('{"dog": {"cat": 2.0, "bird": 0.5}}')
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for args in slices(as_run_here(command, out, classes, models, extra)):
        res = run_cli(args, env=env, timeout=600, cwd=tmp_path)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    meta = read_jsonl(out / "metadata.jsonl")
    total = 6 if "--num" in command else 2 * len(LABELS)
    shown = out if "--outputdir" in command else Path(DEFAULTS["outputdir"])  # as the user gave it
    assert re.search(rf"^{len(meta)}/{total} images in {re.escape(str(shown / 'VOC2007'))}$", res.stderr, re.M)
    if "--shard" not in command:  # a slice's own progress; the assembling slice prints the table
        assert "img/s" in res.stderr and re.search(r"^class\s+kept", res.stderr, re.M), res.stderr
    assert len(load_voc(out)) == len(meta)
    assert run_cli(["check", out]).returncode == 0 or len(meta) < 2 * 2  # check wants 2 ids per split
    rows = report_rows((out / "report" / "index.html").read_text(), "data-class")
    assert sorted(rows) == sorted(LABELS) and sum(int(r[2]) for r in rows.values()) == len(meta)


def test_readme_download_and_cooccurrence_commands(models, tmp_path):
    """`download` with local models fetches nothing and says so per model; `cooccurrence` on a VOC folder
    writes the pair weights a scenes run then accepts."""
    import json

    downloads = [c for c in COMMANDS if c.startswith("imaginarynet download")]
    cooc = [c for c in COMMANDS if c.startswith("imaginarynet cooccurrence")]
    assert downloads and cooc
    classes = write_classfile(tmp_path / "c.txt", LABELS)
    for command in downloads:
        res = run_cli(as_run_here(command, tmp_path / "unused", classes, models), env=dict(os.environ,
                                                                                       HF_HUB_OFFLINE="1"))
        assert res.returncode == 0, res.stderr
        assert res.stdout.count("nothing to download") == 3, res.stdout  # SD, GPT-2, CLIP: local folders
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    for folder in ("Annotations", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True)
    pairs = [("dog", "cat"), ("dog", "cat"), ("dog",), ("bird",)]
    for i, present in enumerate(pairs):
        objects = "".join(f"<object><name>{n}</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5"
                          "</ymax></bndbox></object>" for n in present)
        (voc / "Annotations" / f"{i:06d}.xml").write_text(f"<annotation><filename>{i:06d}.jpg</filename>"
                                                          f"<size><width>8</width><height>8</height></size>"
                                                          f"{objects}</annotation>")
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("".join(f"{i:06d}\n" for i in range(len(pairs))))
    for command in cooc:
        args = shlex.split(command)[1:]
        args[1] = str(voc.parent)
        args[args.index("--classfile") + 1] = str(classes)
        args[args.index("-o") + 1] = str(tmp_path / "voc_pairs.json")
        res = run_cli(args)
        assert res.returncode == 0, res.stderr
        weights = json.loads((tmp_path / "voc_pairs.json").read_text())
        # lift of (dog, cat): n(dog,cat) * N / (n(dog) n(cat)) = 2 * 4 / (3 * 2); pairs never seen: --unseen
        assert weights["dog"]["cat"] == pytest.approx(2 * 4 / (3 * 2), abs=1e-4) and weights["dog"]["bird"] == 0.1
