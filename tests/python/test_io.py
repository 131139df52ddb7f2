"""Case validation: every bad input gets one clear InputError naming the file, the key and the expectation."""

import numpy as np
import pytest

from repmedsam_ov.errors import InputError
from repmedsam_ov.io import load_case, save_segs


def write(tmp_path, name="case.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


IMG2D = np.zeros((40, 60, 3), np.uint8)
VOL = np.zeros((5, 40, 60), np.uint8)


def test_good_2d_and_3d_cases(tmp_path):
    c2 = load_case(write(tmp_path, "a.npz", imgs=IMG2D, boxes=np.array([[0, 0, 60, 40]])))
    assert not c2.is_3d and c2.boxes.dtype == np.int64
    c3 = load_case(write(tmp_path, "b.npz", imgs=VOL, boxes=np.array([[1, 2, 0, 10, 20, 4]]), spacing=np.array([2.0, 1, 1])))
    assert c3.is_3d and c3.spacing.tolist() == [2.0, 1.0, 1.0]


def test_grey_2d_image_is_accepted(tmp_path):
    case = load_case(write(tmp_path, imgs=np.zeros((40, 60), np.uint8), boxes=np.array([[1, 1, 5, 5]])))
    assert case.imgs.shape == (40, 60)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.npz: no such file"):
        load_case(tmp_path / "nothere.npz")


def test_not_an_npz(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(InputError, match=r"text\.npz: not an \.npz archive"):
        load_case(path)


def test_truncated_npz(tmp_path):
    path = write(tmp_path, imgs=IMG2D, boxes=np.array([[0, 0, 5, 5]]))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match=r"case\.npz: "):
        load_case(path)


def test_single_npy_file(tmp_path):
    path = tmp_path / "arr.npy"
    np.save(path, IMG2D)
    with pytest.raises(InputError, match=r"arr\.npy: is a single \.npy array"):
        load_case(path)


@pytest.mark.parametrize("missing", ["imgs", "boxes"])
def test_missing_key(tmp_path, missing):
    arrays = {"imgs": IMG2D, "boxes": np.array([[0, 0, 5, 5]])}
    del arrays[missing]
    with pytest.raises(InputError, match=rf"case\.npz: missing key '{missing}' \(found: "):
        load_case(write(tmp_path, **arrays))


def test_pickled_object_array_is_refused(tmp_path):
    path = write(tmp_path, imgs=np.array([object()], dtype=object), boxes=np.array([[0, 0, 5, 5]]))
    with pytest.raises(InputError, match=r"case\.npz: cannot read the arrays"):
        load_case(path)


def test_wrong_image_dtype(tmp_path):
    with pytest.raises(InputError, match=r"case\.npz: 'imgs' has dtype float32, expected uint8"):
        load_case(write(tmp_path, imgs=IMG2D.astype(np.float32), boxes=np.array([[0, 0, 5, 5]])))


@pytest.mark.parametrize("imgs, boxes, msg", [
    (np.zeros((4, 40, 60, 3), np.uint8), [[0, 0, 5, 5]], r"'imgs' has shape \(4, 40, 60, 3\) but 'boxes' are 2D"),
    (np.zeros((40, 60, 4), np.uint8), [[0, 0, 5, 5]], r"'imgs' has shape \(40, 60, 4\) but 'boxes' are 2D"),
    (np.zeros((40, 60), np.uint8), [[0, 0, 0, 5, 5, 0]], r"'imgs' has shape \(40, 60\) but 'boxes' are 3D"),
    (IMG2D, [[0, 0, 5]], r"'boxes' has shape \(1, 3\), expected \(N, 4\) for 2D or \(N, 6\) for 3D"),
    (IMG2D, [0, 0, 5, 5], r"'boxes' has shape \(4,\)"),
    (np.zeros((0, 60, 3), np.uint8), [[0, 0, 5, 5]], r"'imgs' has shape \(0, 60, 3\): every dimension must be at least 1"),
])
def test_wrong_rank_or_shape(tmp_path, imgs, boxes, msg):
    with pytest.raises(InputError, match=r"case\.npz: " + msg):
        load_case(write(tmp_path, imgs=imgs, boxes=np.array(boxes)))


def test_empty_boxes(tmp_path):
    with pytest.raises(InputError, match=r"case\.npz: 'boxes' is empty \(shape \(0, 4\)\)"):
        load_case(write(tmp_path, imgs=IMG2D, boxes=np.zeros((0, 4), np.int64)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_box(tmp_path, bad):
    boxes = np.array([[0, 0, 5, 5], [1, 1, bad, 4]], np.float64)
    with pytest.raises(InputError, match=r"case\.npz: boxes\[1\] = .*not finite"):
        load_case(write(tmp_path, imgs=IMG2D, boxes=boxes))


def test_box_dtype(tmp_path):
    with pytest.raises(InputError, match=r"'boxes' has dtype bool, expected integer or float"):
        load_case(write(tmp_path, imgs=IMG2D, boxes=np.ones((1, 4), bool)))


def test_x_max_below_x_min(tmp_path):
    with pytest.raises(InputError, match=r"case\.npz: boxes\[0\] = \[20, 4, 10, 9\]: x_max < x_min\. Boxes are \[x_min, y_min, x_max, y_max\]"):
        load_case(write(tmp_path, imgs=IMG2D, boxes=np.array([[20, 4, 10, 9]])))


@pytest.mark.parametrize("box, axis", [([-1, 0, 5, 5], "x"), ([0, 0, 61, 5], "x"), ([0, 0, 5, 41], "y")])
def test_2d_box_outside_image(tmp_path, box, axis):
    with pytest.raises(InputError, match=rf"boxes\[0\] = .*: {axis} outside the image"):
        load_case(write(tmp_path, imgs=IMG2D, boxes=np.array([box])))


@pytest.mark.parametrize("box", [[0, 0, -1, 5, 5, 2], [0, 0, 1, 5, 5, 5], [0, 0, 1, 5, 5, 9]])
def test_3d_box_z_outside_volume(tmp_path, box):
    with pytest.raises(InputError, match=r"boxes\[0\] = .*: z outside the image \(expected 0 <= z <= 4"):
        load_case(write(tmp_path, imgs=VOL, boxes=np.array([box])))


def test_3d_box_z_max_below_z_min(tmp_path):
    with pytest.raises(InputError, match=r"z_max < z_min"):
        load_case(write(tmp_path, imgs=VOL, boxes=np.array([[0, 0, 3, 5, 5, 2]])))


def test_bad_spacing(tmp_path):
    with pytest.raises(InputError, match=r"'spacing' is .*expected 3 positive finite numbers"):
        load_case(write(tmp_path, imgs=VOL, boxes=np.array([[0, 0, 0, 5, 5, 2]]), spacing=np.array([1.0, 0, 1])))


def test_save_segs_is_atomic_and_leaves_no_temporary(tmp_path):
    segs = np.arange(12, dtype=np.uint8).reshape(3, 4)
    save_segs(tmp_path / "out" / "x.npz", segs)
    assert np.array_equal(np.load(tmp_path / "out" / "x.npz")["segs"], segs)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.npz"]


def test_save_segs_failure_leaves_nothing(tmp_path, monkeypatch):
    def write_half_then_fail(f, **arrays):
        f.write(b"PK half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_segs(tmp_path / "y.npz", np.zeros((2, 2), np.uint8))
    assert list(tmp_path.iterdir()) == []
