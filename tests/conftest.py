"""Paths shared by all tests. `../shared` (golden outputs, spec, data) sits beside the repository."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Before torch loads its OpenMP runtime (this conftest is imported first; subprocesses inherit it): idle OpenMP
# workers sleep instead of spinning. On 2 cores beside a training job, spinning workers made each torch encoder
# run of the reference pipeline 2x slower (3.5 s instead of 1.8 s); without load the difference is lost in noise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# `infer` caches compiled networks in ~/.cache by default; tests that want the cache give --cache-dir.
os.environ.setdefault("REPMEDSAM_COMPILE_CACHE", "none")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REPMEDSAM_SHARED", REPO.parent / "shared"))
GOLDEN = SHARED / "golden"
GOLDEN_CKPT = GOLDEN / "rep_medsam_random.pth"
GOLDEN_CASES = sorted(p.stem for p in (GOLDEN / "cases").glob("*.npz"))


def pytest_configure(config):
    if not GOLDEN.is_dir():
        raise pytest.UsageError(f"{GOLDEN}: golden data not found (set REPMEDSAM_SHARED to the shared/ folder).")


def dice(a, b) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def label_dices(segs, gold, n_labels: int) -> list[float]:
    return [dice(segs == i, gold == i) for i in range(1, n_labels + 1)]


def _exporter_key() -> str:
    """Changes when the checkpoint or the code of the export path changes, so a cached export is never stale."""
    package = REPO / "export" / "repmedsam_export"
    sources = [package / name for name in ("__init__.py", "checkpoint.py", "ir_wrappers.py", "to_ir.py")]
    sources += sorted((package / "model").rglob("*.py"))
    h = hashlib.sha256(GOLDEN_CKPT.read_bytes())
    for path in sources:
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes() if path.is_file() else b"missing")
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def golden_model_dir(request, tmp_path_factory) -> Path:
    """The golden checkpoint exported with f32 weights by the project's exporter, cached in pytest's cache
    folder between runs (keyed by checkpoint and exporter source). Exported in a subprocess: no torch here."""
    cache = Path(request.config.cache.mkdir("repmedsam_golden_ir"))
    key = _exporter_key()
    model = cache / key
    if not (model / "decoder.xml").is_file():
        for old in cache.iterdir():
            if old.name != key:
                shutil.rmtree(old, ignore_errors=True)
        staging = tmp_path_factory.mktemp("golden_export") / "model"
        subprocess.run([sys.executable, "-m", "repmedsam_export.to_ir", str(GOLDEN_CKPT), str(staging)], check=True)
        partial = cache / f".{key}.{os.getpid()}"
        shutil.copytree(staging, partial)
        try:
            partial.rename(model)  # atomic: a concurrent session sees the whole folder or none
        except OSError:  # another session got there first
            shutil.rmtree(partial, ignore_errors=True)
    return model
