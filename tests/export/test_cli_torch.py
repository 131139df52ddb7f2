"""`repmedsam-ov infer --backend torch`: outputs, exit codes and one-line messages for bad input."""

import subprocess
import sys

import numpy as np
import pytest

from repmedsam_ov.cli import main

from ..conftest import GOLDEN_CKPT

TORCH = ["--backend", "torch", "--checkpoint", str(GOLDEN_CKPT)]


@pytest.fixture
def cases(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    np.savez(folder / "2DBox_good.npz", imgs=rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
             boxes=np.array([[4, 4, 30, 40], [20, 10, 60, 44]]))
    np.savez(folder / "2DBox_nobox.npz", imgs=np.zeros((48, 64, 3), np.uint8))
    (folder / "2DBox_text.npz").write_text("not an archive")
    return folder


def test_good_case_is_written_and_bad_ones_reported(cases, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["infer", str(cases), "-o", str(out), *TORCH])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["2DBox_good.npz"]
    segs = np.load(out / "2DBox_good.npz")["segs"]
    assert segs.shape == (48, 64) and segs.dtype == np.uint8 and set(np.unique(segs)) <= {0, 1, 2}
    assert "2DBox_nobox.npz: missing key 'boxes' (found: imgs)" in err
    assert "2DBox_text.npz: not an .npz archive" in err
    assert "1 done, 0 skipped, 2 failed" in err
    assert "Traceback" not in err


def test_existing_outputs_are_skipped_unless_overwrite(cases, tmp_path, capsys):
    out = tmp_path / "out"
    good = str(cases / "2DBox_good.npz")
    assert main(["infer", good, "-o", str(out), *TORCH]) == 0
    (out / "2DBox_good.npz").write_bytes(b"old")
    assert main(["infer", good, "-o", str(out), *TORCH]) == 0
    assert (out / "2DBox_good.npz").read_bytes() == b"old"
    assert main(["infer", good, "-o", str(out), "--overwrite", *TORCH]) == 0
    assert np.load(out / "2DBox_good.npz")["segs"].shape == (48, 64)


def test_missing_input_file(tmp_path, capsys):
    assert main(["infer", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "o"), *TORCH]) == 1
    assert "missing.npz: no such file" in capsys.readouterr().err


def test_torch_backend_without_checkpoint_runs_the_bundled_model_s_own(cases, tmp_path, capsys):
    from repmedsam_ov.bundled import bundled_model_dir, torch_checkpoint

    good = str(cases / "2DBox_good.npz")
    own = torch_checkpoint(bundled_model_dir())  # model.json's, in the repository
    assert main(["infer", good, "-o", str(tmp_path / "a"), "--backend", "torch"]) == 0
    assert main(["infer", good, "-o", str(tmp_path / "b"), "--backend", "torch", "--checkpoint", str(own)]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "2DBox_good.npz")["segs"],
                                  np.load(tmp_path / "b" / "2DBox_good.npz")["segs"])
    assert main(["infer", good, "-o", str(tmp_path / "c"), "--backend", "torch", "-m", "litemedsam"]) == 1
    assert "names no torch checkpoint; pass --checkpoint" in capsys.readouterr().err


def test_bad_checkpoint(cases, tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nope")
    assert main(["infer", str(cases), "-o", str(tmp_path / "o"), "--backend", "torch", "--checkpoint", str(bad)]) == 1
    assert "bad.pth: not a PyTorch checkpoint" in capsys.readouterr().err


def test_console_exit_codes_and_no_traceback(cases, tmp_path):
    cli = [sys.executable, "-m", "repmedsam_ov"]
    usage = subprocess.run([*cli, "infer", str(cases)], capture_output=True, text=True)
    assert usage.returncode == 2 and "-o/--output" in usage.stderr
    bad = subprocess.run([*cli, "infer", str(cases / "2DBox_nobox.npz"), "-o", str(tmp_path / "o"), *TORCH],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[0].endswith(
        "2DBox_nobox.npz: missing key 'boxes' (found: imgs). Expected 'imgs' (H,W,3 or H,W for 2D; D,H,W for 3D, uint8) and 'boxes' (N,4 or N,6).")
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "o" / "2DBox_nobox.npz").exists()
