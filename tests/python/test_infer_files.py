"""`repmedsam-ov infer` on NIfTI, NRRD, DICOM series and PNG files made here from the shared example and eval
cases: labels must equal those of the npz path on the same data (run through the same CLI), and the label
maps must carry the input's geometry bit for bit. Small crops keep each model run to a few slices."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from repmedsam_ov.cli import main  # noqa: E402

from ..conftest import SHARED  # noqa: E402
from .test_medical_io import geometry, write_dicom_series  # noqa: E402

EXAMPLES, EVAL = SHARED / "data" / "examples" / "imgs", SHARED / "data" / "eval" / "imgs"


@pytest.fixture(scope="module")
def model_args(golden_model_dir):
    return ["-m", str(golden_model_dir), "--precision", "f32", "-t", "2"]


def npz_labels(folder, name, imgs, boxes, model_args) -> np.ndarray:
    """Labels of the npz path (the reference for every file format), run through the same CLI."""
    np.savez(folder / f"{name}.npz", imgs=imgs, boxes=boxes)
    assert main(["infer", str(folder / f"{name}.npz"), "-o", str(folder / "npz_out"), *model_args]) == 0
    return np.load(folder / "npz_out" / f"{name}.npz")["segs"]


def moved(array: np.ndarray, perm, flips):
    """The canonical (D, H, W) array as a file stored with permuted, flipped axes (ITK's geometry filters)."""
    return sitk.Flip(sitk.PermuteAxes(sitk.GetImageFromArray(array), perm), flips)


@pytest.fixture(scope="module")
def mr(tmp_path_factory, model_args):
    """Four slices of the spinal-cord MR example (uint8) with its box, and the npz path's labels."""
    with np.load(EXAMPLES / "3DBox_MR_sct_t1w-cord.npz") as case:
        imgs = case["imgs"][34:38].copy()
    box = np.array([[13, 34, 0, 24, 40, 3]])
    labels = npz_labels(tmp_path_factory.mktemp("mr"), "mr", imgs, box, model_args)
    assert labels.any()
    return imgs, box, labels


def file_box(image, canonical_box, canonical_shape):
    """The canonical box expressed in the file's voxel indices, through ITK's own index -> point mapping."""
    reference = sitk.GetImageFromArray(np.zeros(canonical_shape, np.uint8))
    corners = [reference.TransformIndexToPhysicalPoint([int(v) for v in canonical_box[s:s + 3]]) for s in (0, 3)]
    index = np.array([image.TransformPhysicalPointToIndex(p) for p in corners])
    return np.concatenate([index.min(0), index.max(0)]).tolist()


def test_nifti_oblique_permuted_volume(mr, model_args, tmp_path, capsys):
    imgs, box, expected = mr
    image = moved(imgs, [1, 2, 0], [True, False, True])
    index_box = file_box(image, box[0], imgs.shape)
    t = 0.3  # tilt the grid: the array stays, the nearest axes stay the same
    tilt = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    image.SetDirection(tuple((tilt @ np.array(image.GetDirection()).reshape(3, 3)).ravel()))
    image.SetSpacing((0.9, 1.1, 3.0))
    sitk.WriteImage(image, str(tmp_path / "cord.nii.gz"))
    (tmp_path / "cord.boxes.csv").write_text("x_min,y_min,z_min,x_max,y_max,z_max\n" + ",".join(map(str, index_box)) + "\n")
    out = tmp_path / "seg" / "cord_seg.nii.gz"
    code = main(["infer", str(tmp_path / "cord.nii.gz"), "-o", str(out), "--overlay", str(tmp_path / "ov"), *model_args])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "uint8 volume taken as already 0..255" in err and "axes reoriented to axial" in err
    written, source = sitk.ReadImage(str(out)), sitk.ReadImage(str(tmp_path / "cord.nii.gz"))
    assert geometry(written) == geometry(source)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(moved(expected, [1, 2, 0],
                                                                                                [True, False, True])))
    overlays = sorted((tmp_path / "ov").iterdir())
    assert [p.name for p in overlays] == ["cord_obj001_z1.png"]
    picture = cv2.imread(str(overlays[0]))
    assert picture.shape[:2] == (76 * 4, 42 * 4) and picture.std(axis=2).max() > 0  # coloured, enlarged


def test_nrrd_with_world_boxes(mr, model_args, tmp_path, capsys):
    imgs, box, expected = mr
    image = moved(imgs, [2, 0, 1], [False, True, True])
    index_box = np.array(file_box(image, box[0], imgs.shape)).reshape(2, 3).tolist()
    image.SetSpacing((1.5, 0.5, 2.0))
    image.SetOrigin((30.0, -12.5, 7.25))
    sitk.WriteImage(image, str(tmp_path / "cord.nrrd"))
    lo, hi = (np.array(image.TransformIndexToPhysicalPoint(c)) for c in index_box)
    world = np.concatenate([np.minimum(lo, hi), np.maximum(lo, hi)]).tolist()
    (tmp_path / "cord.boxes.json").write_text(json.dumps({"image": "cord.nrrd", "space": "world", "boxes": [world]}))
    code = main(["infer", str(tmp_path / "cord.nrrd"), "-o", str(tmp_path / "out"), *model_args])
    assert code == 0, capsys.readouterr().err
    written = sitk.ReadImage(str(tmp_path / "out" / "cord.nrrd"))
    assert geometry(written) == geometry(sitk.ReadImage(str(tmp_path / "cord.nrrd")))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written),
                                  sitk.GetArrayFromImage(moved(expected, [2, 0, 1], [False, True, True])))


def test_dicom_ct_series_soft_tissue_window(model_args, tmp_path, capsys):
    """A CT crop of the eval set stored as Hounsfield units in coronal DICOM slices: the default soft-tissue
    window must give back the npz's uint8 intensities, hence its labels."""
    with np.load(EVAL / "3DBox_CT_medsam2recist_000001_02_01_008-023.npz") as case:
        imgs = case["imgs"][6:10, 200:320, 240:350].copy()
    imgs[0, 0, 0], imgs[-1, -1, -1] = 0, 255  # the window's ends occur, so its min-max scaling is the identity
    box = np.array([[25, 31, 0, 86, 83, 3]])  # the case's box [265, 231, 5, 326, 283, 11] in this crop
    expected = npz_labels(tmp_path, "ct", imgs, box, model_args)
    hu = (np.ceil(imgs.astype(np.float64) * 400 / 255) - 160).astype(np.int16)
    assert np.array_equal(((np.clip(hu, -160, 240) + 160) / 400 * 255).astype(np.uint8), imgs)
    image = moved(hu, [0, 2, 1], [False, True, False])
    index_box = file_box(image, box[0], imgs.shape)
    image.SetSpacing((0.7, 5.0, 0.7))
    write_dicom_series(image, tmp_path / "dicom" / "ct_series")
    (tmp_path / "dicom" / "ct_series.boxes.json").write_text(json.dumps({"image": "ct_series", "boxes": [index_box]}))
    code = main(["infer", str(tmp_path / "dicom"), "-o", str(tmp_path / "out"), *model_args])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "CT window 400,40 HU (DICOM Modality CT)" in err
    series = sitk.ImageSeriesReader()
    series.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "dicom" / "ct_series")))
    written = sitk.ReadImage(str(tmp_path / "out" / "ct_series.mha"))
    assert geometry(written) == geometry(series.Execute())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written),
                                  sitk.GetArrayFromImage(moved(expected, [0, 2, 1], [False, True, False])))


def test_png_image(model_args, tmp_path, capsys):
    with np.load(EXAMPLES / "2DBox_Microscopy_StarDistDSB_img2d.npz") as case:
        imgs, boxes = case["imgs"], case["boxes"][:12]
    expected = npz_labels(tmp_path, "nuclei", imgs, boxes, model_args)
    cv2.imwrite(str(tmp_path / "nuclei.png"), imgs[:, :, ::-1])
    (tmp_path / "boxes.json").write_text(json.dumps({"image": "nuclei.png", "boxes": boxes.tolist()}))
    out = tmp_path / "out" / "nuclei_labels.png"
    code = main(["infer", str(tmp_path / "nuclei.png"), "--boxes", str(tmp_path / "boxes.json"), "-o", str(out),
                 "--overlay", str(tmp_path / "ov"), *model_args])
    assert code == 0, capsys.readouterr().err
    np.testing.assert_array_equal(cv2.imread(str(out), cv2.IMREAD_UNCHANGED), expected)
    assert (tmp_path / "ov" / "nuclei.png").is_file()


def test_folder_batch_with_bad_files(mr, model_args, tmp_path, capsys):
    """Bad files are reported with a reason and leave no output; the good one is written; a second run skips it."""
    imgs, box, expected = mr
    folder = tmp_path / "in"
    folder.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(imgs), str(folder / "good.nii.gz"))
    (folder / "good.boxes.json").write_text(json.dumps(box.tolist()))
    data = (folder / "good.nii.gz").read_bytes()
    (folder / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    (folder / "cut.boxes.json").write_text(json.dumps(box.tolist()))
    sitk.WriteImage(sitk.GetImageFromArray(imgs), str(folder / "outside.nrrd"))
    (folder / "outside.boxes.json").write_text(json.dumps([[13, 34, 0, 24, 40, 9]]))
    cv2.imwrite(str(folder / "photo.png"), imgs[0])
    (folder / "photo.boxes.json").write_text(json.dumps({"image": "xray.png", "boxes": [[1, 1, 5, 5]]}))
    write_dicom_series(sitk.GetImageFromArray(np.zeros((3, 6, 7), np.int16)), folder / "mixed", sizes={1: (8, 6)})
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    args = ["infer", str(folder), "-o", str(out), "--workers", "2", *model_args]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["good.nii.gz"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "good.nii.gz"))), expected)
    assert "1 done, 0 skipped, 4 failed" in err
    for reason in ("cut.nii.gz: truncated NIfTI file: the voxel data end early",
                   "outside.boxes.json: boxes[0] = [13, 34, 0, 24, 40, 9]: z outside the image (expected 0 <= z <= 3",
                   "Is outside.boxes.json the box file for outside.nrrd?",
                   "photo.boxes.json: is the box file for 'xray.png', not for photo.png",
                   "mixed: DICOM series with mixed slice sizes"):
        assert f"failed: {tmp_path}" in err and reason in err, reason
    assert "Traceback" not in err
    assert main(args) == 1
    assert "0 done, 1 skipped, 4 failed" in capsys.readouterr().err


def test_output_file_needs_one_input(tmp_path, capsys):
    (tmp_path / "a.nii.gz").write_bytes(b"")
    (tmp_path / "b.nii.gz").write_bytes(b"")
    assert main(["infer", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "-o", str(tmp_path / "s.nii.gz")]) == 2
    assert "names a file but there are 2 inputs" in capsys.readouterr().err
    assert main(["infer", str(tmp_path / "a.nii.gz"), "-o", str(tmp_path / "o"), "--window", "wide"]) == 2
    assert "--window 'wide': expected soft-tissue, lung, bone or WIDTH,LEVEL" in capsys.readouterr().err


def test_inputs_that_share_an_output_name_are_refused(tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "case.npz").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["infer", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a' / 'case.npz'} and {tmp_path / 'b' / 'case.npz'} would both be written to" in err
    assert not out.exists()


def test_files_run_without_torch(toy_model_dir, tmp_path):
    """Reading, reorienting, segmenting and writing a NIfTI volume and a PNG never import torch."""
    volume = np.random.default_rng(0).integers(0, 255, (3, 20, 24), dtype=np.uint8)
    sitk.WriteImage(moved(volume, [1, 0, 2], [True, False, False]), str(tmp_path / "v.nii.gz"))
    (tmp_path / "v.boxes.json").write_text("[[2, 3, 0, 10, 18, 2]]")  # file size (i, j, k) = (20, 24, 3)
    cv2.imwrite(str(tmp_path / "p.png"), volume[0])
    (tmp_path / "p.boxes.csv").write_text("x_min,y_min,x_max,y_max\n2,3,12,15\n")
    script = textwrap.dedent(f"""
        import json, sys
        from repmedsam_ov.cli import main
        code = main(["infer", {str(tmp_path)!r}, "-o", {str(tmp_path / "out")!r}, "-m", {str(toy_model_dir)!r},
                     "--precision", "f32", "-q", "--overlay", {str(tmp_path / "ov")!r}])
        print(json.dumps({{"code": code, "torch": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "nncf"))}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"code": 0, "torch": []}, out.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p.png", "v.nii.gz"]
