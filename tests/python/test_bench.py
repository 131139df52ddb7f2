"""`repmedsam-ov bench`: engines side by side print one table and JSON lines; the synthetic scale case."""

import json

import numpy as np
import pytest

from repmedsam_ov.bench import synthetic_volume
from repmedsam_ov.cli import main


def test_bench_two_engines_agree(golden_model_dir, tmp_path, capsys):
    rng = np.random.default_rng(1)
    case = tmp_path / "2DBox_Test_tiny.npz"
    np.savez(case, imgs=rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), boxes=np.array([[4, 4, 60, 50], [50, 30, 120, 90]]))
    out = tmp_path / "bench.jsonl"
    code = main(["bench", str(case), "--engines", "runtime-f32,ov-python-f32", "-m", str(golden_model_dir),
                 "--json", str(out), "--profile", "-q"])
    assert code == 0
    table = capsys.readouterr().out
    assert "runtime-f32" in table and "ov-python-f32" in table and "TOTAL" in table
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["engine"] for r in rows] == ["runtime-f32", "ov-python-f32"]
    assert rows[1]["reference"] == "runtime-f32" and rows[1]["dice_vs_reference"] >= 0.999
    assert all(r["boxes"] == 2 and r["slices"] == 1 and r["peak_rss_mb"] > 0 and r["openvino"] for r in rows)
    assert [r["precision"] for r in rows] == ["f32", "f32"]
    # the runtime reports where its time went; the Python loop does not
    stages = rows[0]["stage_seconds"]
    assert stages["encoder"] > 0 and stages["decoder"] > 0 and 0 < stages["wall"] <= rows[0]["seconds"]
    assert rows[1]["stage_seconds"] == {}
    assert "against the floor" in table


def test_a_repeated_case_name_is_benched_once(golden_model_dir, tmp_path, capsys):
    rng = np.random.default_rng(2)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        np.savez(tmp_path / folder / "2DBox_Test_same.npz", imgs=rng.integers(0, 255, (40, 50, 3), dtype=np.uint8),
                 boxes=np.array([[4, 4, 30, 30]]))
    out = tmp_path / "bench.jsonl"
    assert main(["bench", str(tmp_path / "a"), str(tmp_path / "b"), "--engines", "runtime-f32", "-m",
                 str(golden_model_dir), "--json", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 1
    assert "skipped, a case named 2DBox_Test_same is already in the run" in capsys.readouterr().err


def test_unknown_engine_is_a_usage_error(tmp_path, capsys):
    assert main(["bench", "--synthetic", "--engines", "runtime-f32,fast"]) == 2
    assert "unknown engine(s) fast" in capsys.readouterr().err


def test_synthetic_volume_is_deterministic_and_boxed():
    a, b = synthetic_volume(24, 64, 3, seed=5), synthetic_volume(24, 64, 3, seed=5)
    assert np.array_equal(a.imgs, b.imgs) and np.array_equal(a.boxes, b.boxes)
    assert a.imgs.shape == (24, 64, 64) and a.imgs.dtype == np.uint8 and a.boxes.shape == (3, 6)
    for x0, y0, z0, x1, y1, z1 in a.boxes:
        assert 0 <= x0 <= x1 < 64 and 0 <= y0 <= y1 < 64 and 0 <= z0 <= z1 < 24


def test_gts_scores_each_engine_against_ground_truth(tmp_path, capsys):
    """box-fill's masks against a ground truth made from them: label 1 whole (DSC 1), label 2 cut to its top rows
    (DSC 2·kept/(box + kept)); a case without a label file stops the run before any engine runs."""
    from repmedsam_ov.reference import box_fill

    rng = np.random.default_rng(3)
    boxes = np.array([[4, 4, 20, 16], [24, 10, 44, 30]])
    np.savez(tmp_path / "2DBox_Test_scored.npz", imgs=rng.integers(0, 255, (40, 50, 3), dtype=np.uint8), boxes=boxes)
    filled = box_fill((40, 50, 3), boxes, False)
    gts = filled.copy()
    rows_of_2 = np.flatnonzero((filled == 2).any(axis=1))
    bottom = rows_of_2[len(rows_of_2) // 2:]
    gts[bottom] = np.where(gts[bottom] == 2, 0, gts[bottom])
    (tmp_path / "gts").mkdir()
    np.savez(tmp_path / "gts" / "2DBox_Test_scored.npz", gts=gts)
    out = tmp_path / "bench.jsonl"
    assert main(["bench", str(tmp_path / "2DBox_Test_scored.npz"), "--engines", "box-fill", "--gts",
                 str(tmp_path / "gts"), "--json", str(out), "-q"]) == 0
    row = json.loads(out.read_text())
    box, kept = int((filled == 2).sum()), int((gts == 2).sum())
    assert 0 < kept < box
    assert row["gt_dsc"] == pytest.approx((1 + 2 * kept / (box + kept)) / 2)
    assert "against ground truth" in capsys.readouterr().out

    np.savez(tmp_path / "2DBox_Test_unlabelled.npz", imgs=rng.integers(0, 255, (40, 50, 3), dtype=np.uint8), boxes=boxes)
    assert main(["bench", str(tmp_path / "2DBox_Test_unlabelled.npz"), "--engines", "box-fill", "--gts",
                 str(tmp_path / "gts")]) != 0
    assert "no ground truth for 2DBox_Test_unlabelled" in capsys.readouterr().err
