"""Shared fixtures: tiny random models built once per test session, and CLI runners."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# An accidental download must fail loudly, never hang or succeed.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    from imaginarynet.testing import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_sd_args(tiny) -> list[str]:
    return ["--sd-model", str(tiny["sd"]), "--steps", "2", "--resolution", "64"]


def run_cli(args: list[str], timeout: float = 300, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh process."""
    env = dict(env or os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "imaginarynet", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def write_classfile(path: Path, labels: list[str]) -> Path:
    path.write_text("".join(f"{label}\n" for label in labels))
    return path


def run_main(args: list) -> int:
    """The CLI in this process (so tests can monkeypatch); returns the exit status."""
    from imaginarynet.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code or 0
    return 0
