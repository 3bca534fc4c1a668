"""Pytest fixtures: tiny random models built once per test session. Plain helpers
(CLI runners, FIXTURES, ...) are in helpers.py: `from helpers import ...`."""
from __future__ import annotations

import os
from pathlib import Path

# An accidental download must fail loudly, never hang or succeed.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    from imaginarynet.testing import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_sd_args(tiny) -> list[str]:
    return ["--sd-model", str(tiny["sd"]), "--steps", "2", "--resolution", "64"]



@pytest.fixture(scope="session")
def pattern(tmp_path_factory):
    """The seed-only backend plugin `pattern_backend:Pattern` (helpers.PATTERN_MODULE), importable in this process."""
    import sys

    from helpers import PATTERN_MODULE

    folder = tmp_path_factory.mktemp("plugin")
    (folder / "pattern_backend.py").write_text(PATTERN_MODULE)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(folder))
        import pattern_backend

        yield pattern_backend
    sys.modules.pop("pattern_backend", None)
