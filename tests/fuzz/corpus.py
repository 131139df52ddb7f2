"""The regression corpus: every case the fuzzer found a defect with, kept as files (tests/fuzz/corpus/<name>/).

A corpus entry is a folder holding `case.json` ({"reader", "inputs", "args", "note", "defect"}) and the case's
files under `files/`. `test_corpus.py` replays each through the same invariants; `save_case` writes one (the
fuzz tests save every failing case to $REPMEDSAM_FUZZ_FAILURES, default $TMPDIR/repmedsam-fuzz-failures/, to
be reviewed and moved here with a "defect" line).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .gen import Hostile

CORPUS = Path(__file__).resolve().parent / "corpus"


def save_case(case: Hostile, folder: Path, defect: str = "") -> Path:
    (folder / "files").mkdir(parents=True, exist_ok=True)
    for rel, data in case.files.items():
        path = folder / "files" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    meta = {"reader": case.reader, "inputs": case.inputs, "args": case.args, "note": case.note, "defect": defect}
    (folder / "case.json").write_text(json.dumps(meta, indent=1) + "\n")
    return folder


def load_case_folder(folder: Path) -> Hostile:
    meta = json.loads((folder / "case.json").read_text())
    files = {str(p.relative_to(folder / "files")): p.read_bytes() for p in sorted((folder / "files").rglob("*"))
             if p.is_file()}
    return Hostile(meta["reader"], files, meta["inputs"], meta.get("args", []), meta.get("note", ""))


def corpus_cases() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if (p / "case.json").is_file()) if CORPUS.is_dir() else []


def failures_folder() -> Path:
    return Path(os.environ.get("REPMEDSAM_FUZZ_FAILURES", Path(tempfile.gettempdir()) / "repmedsam-fuzz-failures"))
