"""Metrics: DSC and NSD against the official challenge values and against cases worked out by hand.

Ground truth: /work/shared/golden/metrics/metrics.csv, computed by the official challenge code for the
predictions in golden/metrics/segs/{boxfill,shift2}/ against data/eval/gts (spacing from data/eval/imgs).
"""

import csv
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from repmedsam_ov import InputError
from repmedsam_ov.cli import main
from repmedsam_ov.metrics import _surfel_areas, dsc, evaluate_case, nsd

SHARED = Path(os.environ.get("REPMEDSAM_SHARED", "/work/shared"))
GOLDEN = SHARED / "golden" / "metrics"
EVAL = SHARED / "data" / "eval"
needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"{GOLDEN} not found (set REPMEDSAM_SHARED)")


def _official() -> list[dict]:
    if not GOLDEN.is_dir():
        return []
    with open(GOLDEN / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


OFFICIAL = _official()
R2, R3 = math.sqrt(2), math.sqrt(3)


@needs_golden
@pytest.mark.parametrize("row", OFFICIAL, ids=[f"{r['prediction']}-{r['case'][:-4]}" for r in OFFICIAL])
def test_matches_official_values(row):
    gts = np.load(EVAL / "gts" / row["case"])["gts"]
    segs = np.load(GOLDEN / "segs" / row["prediction"] / row["case"])["segs"]
    spacing = np.load(EVAL / "imgs" / row["case"])["spacing"] if gts.ndim == 3 else None
    scores = evaluate_case(gts, segs, spacing)
    assert scores.dsc == pytest.approx(float(row["dsc"]), abs=1e-4)
    assert scores.nsd == pytest.approx(float(row["nsd"]), abs=1e-4)


def test_surfel_areas_follow_deepmind_table():
    # Entries of DeepMind's neighbourhood-code table (normals scaled to triangle areas, unit voxels).
    areas = _surfel_areas((1.0, 1.0, 1.0))
    assert areas[0] == areas[255] == 0
    assert areas[1] == pytest.approx(R3 / 8)  # one voxel: a corner triangle
    assert areas[3] == pytest.approx(R2 / 2)  # two voxels along axis 2: a slanted rectangle
    assert areas[15] == pytest.approx(1.0)  # a full 2×2 layer: a flat square
    assert areas[7] == pytest.approx(0.5 + R3 / 4 + R3 / 8)  # three voxels of a face: DeepMind's pentagon split
    assert areas[6] == pytest.approx(2 * R3 / 8)  # diagonal pair on a face: two separate corners
    np.testing.assert_allclose(areas, areas[::-1])  # a code and its complement share one surface
    # Anisotropic voxels scale each normal component by the other two sizes: (s1·s2, s0·s2, s0·s1).
    assert _surfel_areas((2.0, 3.0, 5.0))[15] == pytest.approx(15.0)
    assert _surfel_areas((2.0, 3.0, 5.0))[1] == pytest.approx(math.hypot(15, 10, 6) / 8)


def test_surfel_areas_equal_deepmind_library_when_installed():
    lookup = pytest.importorskip("surface_distance.lookup_tables")
    for spacing in [(1.0, 1.0, 1.0), (5.0, 0.846, 0.846), (0.3, 2.7, 1.1)]:
        np.testing.assert_allclose(_surfel_areas(spacing),
                                   lookup.create_table_neighbour_code_to_surface_area(spacing), atol=1e-12)


def _voxel_and_bar():
    gt = np.zeros((3, 3, 4), bool)
    gt[1, 1, 1] = True
    seg = gt.copy()
    seg[1, 1, 2] = True  # one voxel further along axis 2
    return gt, seg


def test_nsd_hand_worked():
    gt, seg = _voxel_and_bar()
    # gt: 8 corner surfels of √3/8; seg: 8 end corners of √3/8 and 4 middle corners of √2/2. At tolerance 0.5
    # only seg's 4 far corners (distance 1) miss.
    assert nsd(gt, seg, (1, 1, 1), 0.5) == pytest.approx((1.5 * R3 + 2 * R2) / (2 * R3 + 2 * R2))
    # Voxels 3 mm long on axis 2: the far corners are 3 mm away; areas scale to √19/8 and 3√2/2.
    r19 = math.sqrt(19)
    assert nsd(gt, seg, (1, 1, 3), 2.0) == pytest.approx((1.5 * r19 + 6 * R2) / (2 * r19 + 6 * R2))
    assert nsd(gt, seg, (3, 1, 1), 2.0) == 1.0  # along axis 0 they are 3 mm apart, along axis 2 only 1 mm
    assert nsd(gt, gt, (1, 1, 1)) == 1.0
    assert nsd(gt, np.zeros_like(gt), (1, 1, 1)) == 0.0
    assert math.isnan(nsd(np.zeros_like(gt), np.zeros_like(gt), (1, 1, 1)))


def test_dsc_hand_worked():
    gt, seg = _voxel_and_bar()
    assert dsc(gt, seg) == pytest.approx(2 * 1 / 3)
    assert math.isnan(dsc(np.zeros(4, bool), np.zeros(4, bool)))
    with pytest.raises(InputError, match="expected bool"):
        dsc(gt.astype(np.uint8), seg)


def test_2d_case_is_one_layer_volume_with_unit_spacing():
    gts = np.zeros((20, 20), np.uint8)
    gts[5:10, 5:10] = 1
    segs = np.zeros_like(gts)
    segs[5:10, 8:13] = 1  # shifted 3 pixels along x: DSC 0.4
    scores = evaluate_case(gts, segs)
    assert scores.dsc == pytest.approx(0.4)
    # As an H×W×1 volume every pixel corner, on both layers, is surface: per square and layer 16 inner corners
    # of area 1, 16 edge corners of √2/2 and 4 outer corners of √3/8. Only the column 3 px from the other
    # square misses (2 outer + 4 edge corners per layer and square).
    total = 2 * 2 * (16 + 16 * R2 / 2 + 4 * R3 / 8)
    missed = 2 * 2 * (2 * R3 / 8 + 4 * R2 / 2)
    assert scores.nsd == pytest.approx(1 - missed / total)


def test_nsd_is_zero_when_case_dsc_is_at_most_0_2():
    gts = np.zeros((1, 30, 30), np.uint8)
    gts[0, 2:10, 2:10] = 1
    segs = np.zeros_like(gts)
    segs[0, 20:28, 20:28] = 1
    scores = evaluate_case(gts, segs, (1, 1, 1))
    assert (scores.dsc, scores.nsd) == (0.0, 0.0)
    assert np.isnan(scores.label_nsd).all()


def test_labels_come_from_gts_only():
    gts = np.zeros((4, 8, 8), np.uint16)
    gts[1:3, 1:4, 1:4] = 1
    gts[1:3, 5:7, 5:7] = 300
    segs = gts.copy()
    segs[0, 0, 0] = 7  # a label the ground truth does not have: ignored, as in the challenge
    segs[gts == 300] = 0  # label 300 missed entirely: DSC 0, NSD 0
    scores = evaluate_case(gts, segs, (2.0, 1.0, 1.0))
    assert scores.labels.tolist() == [1, 300]
    assert scores.label_dsc.tolist() == [1.0, 0.0]
    assert scores.label_nsd.tolist() == [1.0, 0.0]
    assert (scores.dsc, scores.nsd) == (0.5, 0.5)


@pytest.mark.parametrize("gts, segs, spacing, message", [
    (np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), None,
     r"'gts' has shape \(4, 4\) but 'segs' has shape \(4, 5\)"),
    (np.ones((2, 4, 4), np.uint8), np.ones((2, 4, 4), np.uint8), None, "a 3D case needs 'spacing'"),
    (np.ones((2, 4, 4), np.uint8), np.ones((2, 4, 4), np.uint8), (1, 0, 1), "expected 3 positive finite voxel sizes"),
    (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), None, "no non-zero label"),
    (np.ones((4, 4), np.uint8), np.ones((4, 4), np.float32), None, "'segs' has dtype float32, expected integer"),
])
def test_evaluate_case_rejects_bad_input(gts, segs, spacing, message):
    with pytest.raises(InputError, match=message):
        evaluate_case(gts, segs, spacing)


SMALL_CASES = ["2DBox_US_BUSI_benign127.npz", "2DBox_Dermoscopy_PH2_IMD024.npz",
               "3DBox_CT_medsam2recist_000015_01_01_081-093.npz"]


def _folders(tmp_path, cases, prediction="boxfill"):
    segs, gts = tmp_path / "segs", tmp_path / "gts"
    segs.mkdir()
    gts.mkdir()
    for name in cases:
        shutil.copy(GOLDEN / "segs" / prediction / name, segs / name)
        shutil.copy(EVAL / "gts" / name, gts / name)
    return segs, gts


@needs_golden
def test_cli_csv_matches_official_and_reports_bad_cases(tmp_path, capsys):
    segs, gts = _folders(tmp_path, SMALL_CASES)
    np.savez(gts / "2DBox_Fundus_noseg.npz", gts=np.ones((4, 4), np.uint8))  # no prediction
    np.savez(segs / "2DBox_Fundus_orphan.npz", segs=np.ones((4, 4), np.uint8))  # no ground truth
    np.savez(gts / "2DBox_XRay_shape.npz", gts=np.ones((4, 4), np.uint8))
    np.savez(segs / "2DBox_XRay_shape.npz", segs=np.ones((4, 5), np.uint8))
    np.savez(gts / "2DBox_XRay_broken.npz", gts=np.ones((4, 4), np.uint8))
    (segs / "2DBox_XRay_broken.npz").write_bytes(b"not a zip archive")
    out = tmp_path / "scores.csv"

    assert main(["evaluate", "--segs", str(segs), "--gts", str(gts), "--csv", str(out)]) == 1

    with open(out, newline="") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    official = {r["case"]: r for r in OFFICIAL if r["prediction"] == "boxfill"}
    for name in SMALL_CASES:
        assert float(rows[name]["dsc"]) == pytest.approx(float(official[name]["dsc"]), abs=1e-4)
        assert float(rows[name]["nsd"]) == pytest.approx(float(official[name]["nsd"]), abs=1e-4)
        assert rows[name]["error"] == ""
    assert rows["3DBox_CT_medsam2recist_000015_01_01_081-093.npz"]["modality"] == "CT"
    assert rows["2DBox_Fundus_noseg.npz"]["error"] == f"{segs / '2DBox_Fundus_noseg.npz'}: no such file."
    assert rows["2DBox_Fundus_orphan.npz"]["error"] == f"{gts / '2DBox_Fundus_orphan.npz'}: no such file."
    shape_error = rows["2DBox_XRay_shape.npz"]["error"]
    assert str(segs / "2DBox_XRay_shape.npz") in shape_error and str(gts / "2DBox_XRay_shape.npz") in shape_error
    assert rows["2DBox_XRay_broken.npz"]["error"].startswith(f"{segs / '2DBox_XRay_broken.npz'}: not an .npz archive")
    assert all(rows[n]["dsc"] == "" for n in rows if rows[n]["error"])
    table = capsys.readouterr().out
    assert "4 of 7 cases failed:" in table
    assert "overall" in table


@needs_golden
def test_cli_json_lines(tmp_path, capsys):
    segs, gts = _folders(tmp_path, SMALL_CASES[:2], prediction="shift2")
    assert main(["evaluate", "--segs", str(segs), "--gts", str(gts), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    official = {r["case"]: r for r in OFFICIAL if r["prediction"] == "shift2"}
    cases = [line for line in lines if "case" in line]
    assert [c["case"] for c in cases] == sorted(SMALL_CASES[:2])
    for c in cases:
        assert c["dsc"] == pytest.approx(float(official[c["case"]]["dsc"]), abs=1e-4)
        assert c["error"] is None
    overall = lines[-1]
    assert overall["modality"] == "overall" and overall["cases"] == 2 and overall["failed"] == 0
    assert overall["dsc"] == pytest.approx(np.mean([float(official[n]["dsc"]) for n in SMALL_CASES[:2]]), abs=1e-4)


def test_cli_missing_folder_is_an_error(tmp_path, capsys):
    assert main(["evaluate", "--segs", str(tmp_path / "nope"), "--gts", str(tmp_path)]) == 1
    assert f"{tmp_path / 'nope'}: no such folder." in capsys.readouterr().err


@needs_golden
def test_cli_takes_3d_spacing_from_imgs(tmp_path, capsys):
    name = "3DBox_CT_medsam2recist_000015_01_01_081-093.npz"
    segs, gts = _folders(tmp_path, [])
    shutil.copy(GOLDEN / "segs" / "shift2" / name, segs / name)
    np.savez_compressed(gts / name, gts=np.load(EVAL / "gts" / name)["gts"])  # without 'spacing'
    args = ["evaluate", "--segs", str(segs), "--gts", str(gts), "--json"]

    assert main(args) == 1
    failed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert "no 'spacing' for this 3D case; pass --imgs DIR" in failed["error"]
    assert main(args + ["--imgs", str(EVAL / "imgs")]) == 0
    case = json.loads(capsys.readouterr().out.splitlines()[0])
    official = next(r for r in OFFICIAL if r["prediction"] == "shift2" and r["case"] == name)
    assert case["dsc"] == pytest.approx(float(official["dsc"]), abs=1e-4)
    assert case["nsd"] == pytest.approx(float(official["nsd"]), abs=1e-4)
