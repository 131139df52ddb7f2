"""Paths shared by all tests. `../shared` (golden outputs, spec, data) sits beside the repository."""

import os
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def golden_model_dir(tmp_path_factory):
    """The golden checkpoint exported with f32 weights (in a subprocess: the test process stays torch-free)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("golden_model") / "model"
    subprocess.run([sys.executable, "-m", "repmedsam_export.to_ir", str(GOLDEN_CKPT), str(out)], check=True)
    return out
