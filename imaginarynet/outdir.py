"""The output directory: its layout, run.json, and the resume / refuse / overwrite decision."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from imaginarynet.errors import UserError
from imaginarynet.fsutil import atomic_write_text

# Everything ImaginaryNet writes at the top of OUT; --overwrite removes exactly these.
OWNED = ("VOC2007", "prompts", "metadata.jsonl", "run.json", ".state", "rejected", "report", "exports", "proposals")


class OutputDir:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.state = self.root / ".state"
        self.voc = self.root / "VOC2007"
        self.run_json = self.root / "run.json"
        self.ledger = self.state / "ledger.jsonl"
        self.staging = self.state / "images"

    def read_run(self) -> dict | None:
        if not self.run_json.exists():
            return None
        try:
            return json.loads(self.run_json.read_text())
        except ValueError as exc:
            raise UserError(f"{self.run_json} is corrupt ({exc}); use --overwrite to start again") from exc

    def write_run(self, info: dict) -> None:
        atomic_write_text(self.run_json, json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")

    def clear(self) -> None:
        for name in OWNED:
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def open_for(self, cfg) -> dict | None:
        """Previous run.json if it belongs to the same data options; refuse otherwise."""
        if cfg.overwrite:
            self.clear()
            return None
        previous = self.read_run()
        if previous is None:
            if self.voc.exists() or self.ledger.exists():
                raise UserError(f"{self.root} holds a dataset without run.json; use --overwrite to replace it")
            return None
        if previous.get("fingerprint") != cfg.fingerprint():
            old = previous.get("data_options", {})
            new = json.loads(json.dumps(cfg.data_options(), default=str))
            differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise UserError(
                f"{self.root} was generated with other options ({', '.join(differ) or 'version'} differ); "
                "use another --outputdir or --overwrite"
            )
        return previous
