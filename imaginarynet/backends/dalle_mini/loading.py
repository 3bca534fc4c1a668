"""Checkpoint files (config.json + flax_model.msgpack, tokenizer files) from a local folder or a hub id."""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from imaginarynet.errors import UserError


def resolve_folder(ref: str, option: str, patterns: list[str]) -> Path:
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref, allow_patterns=patterns))
    except Exception as exc:  # hub errors come in many types; all mean "not available here"
        raise UserError(
            f"{option}: cannot get {ref!r} ({type(exc).__name__}); on a machine with internet run "
            f"`huggingface-cli download {ref}` (or pass a local folder)") from exc


def load_params(folder: Path) -> dict:
    """The Flax parameter tree, exactly as the checkpoint stores it (numpy arrays)."""
    from flax.serialization import msgpack_restore

    tree = msgpack_restore((Path(folder) / "flax_model.msgpack").read_bytes())
    return tree.get("params", tree)


def config_from(cls, folder: Path):
    """A config dataclass from config.json, ignoring keys it does not know."""
    raw = json.loads((Path(folder) / "config.json").read_text())
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in known})
