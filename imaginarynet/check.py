"""What every format's check shares: split-list reading, the errors that mean "malformed", and the one-line-
per-problem report. Each format checks its own files next to its writer (writers/voc.py, coco.py, detic.py,
yolo.py); exports.FORMATS says which check `imaginarynet check --format` and assembly run.
"""
from __future__ import annotations

from pathlib import Path


def read_list(path: Path, problems: list) -> list[str] | None:
    if not path.exists():
        problems.append((path, "missing"))
        return None
    data = path.read_bytes()
    if b"\r" in data:
        problems.append((path, "has CR line endings (LF only)"))
    if data and not data.endswith(b"\n"):
        problems.append((path, "no final newline"))
    text = data.decode("utf-8", "replace")
    if not text:
        return []
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError, OSError)


def format_problems(problems, root: Path) -> str:
    def rel(p: Path) -> str:
        try:
            return str(Path(p).relative_to(root))
        except ValueError:
            return str(p)

    return "\n".join(f"{rel(p)}: {msg}" for p, msg in problems)
