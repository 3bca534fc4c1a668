"""Bad input: one line on stderr, exit status 2, no traceback, before any model loads."""
import pytest
from helpers import run_cli, write_classfile


@pytest.fixture
def classes(tmp_path):
    return write_classfile(tmp_path / "classes.txt", ["dog", "cat"])


CASES = {
    "unknown backend": (["--backend", "midjourney"], "unknown backend 'midjourney'"),
    "missing class file": (["--classfile", "/nonexistent/classes.txt"], "class file not found"),
    "num below one": (["--num", "0"], "--num must be at least 1"),
    "fewer images than classes": (["--num", "1"], "fewer images than classes"),
    "resolution": (["--resolution", "100"], "multiple of 8"),
    "threshold": (["--threshold", "1.5"], "--threshold must be within [0, 1]"),
    "negative threshold": (["--threshold", "-0.1"], "--threshold must be within [0, 1]"),
    "missing model path": (["--sd-model", "./no/such/model"], "model path does not exist"),
    "missing gpt path": (["--gpt", "--gpt-model", "/no/such/gpt2"], "--gpt-model: model path does not exist"),
    "unwritable output": (["--outputdir", "/proc/imaginarynet-out"], "is not writable"),
    "both num and per-class": (["--num", "4", "--per-class", "2"], "either --num or --per-class"),
    "template without name": (["--template", "a photo"], "--template must contain {name}"),
    "unknown option": (["--bogus"], "No such option"),
    "bad dtype": (["--dtype", "fp8"], "fp8"),
    "backend option syntax": (["--backend-option", "novalue"], "--backend-option wants KEY=VALUE"),
    "unknown backend option": (["--backend-option", "turbo=1"], "unknown --backend-option 'turbo'"),
    "sd model offline": (["--sd-model", "someone/not-cached"], "imaginarynet download --sd-model someone/not-cached"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2(case, classes, tmp_path):
    args, message = CASES[case]
    base = ["--classfile", classes, "--outputdir", tmp_path / "out", "--num", "4"]
    result = run_cli(base + args, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    # nothing generated and no run started
    assert not (tmp_path / "out" / "run.json").exists()


@pytest.mark.parametrize("content, message", [
    ("", "has no classes"),
    ("dog\ncat\ndog\n", "duplicate class 'dog'"),
])
def test_bad_class_files(content, message, tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(content)
    result = run_cli(["--classfile", path, "--outputdir", tmp_path / "out", "--num", "4"], timeout=60)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_optional_dependency_names_the_extra(tmp_path, tiny):
    """With diffusers hidden, the SD backend says which extra to install."""
    code = (
        "import sys; sys.modules['diffusers'] = None\n"
        "from imaginarynet.cli import main\n"
        f"main(['--classfile', 'voc', '--num', '20', '--outputdir', {str(tmp_path / 'out')!r}, "
        f"'--sd-model', {str(tiny['sd'])!r}])\n"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "pip install 'imaginarynet[sd]'" in result.stderr and "Traceback" not in result.stderr
