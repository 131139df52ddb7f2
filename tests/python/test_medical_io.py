"""Medical file I/O without the model: reorientation against ITK's own filters, box transforms, label maps
written back in the input's exact geometry (NIfTI, NRRD, MetaImage, DICOM series), truncated and
inconsistent files, box files and intensity preprocessing."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from repmedsam_ov.boxes_file import find_box_file, load_boxes  # noqa: E402
from repmedsam_ov.errors import InputError  # noqa: E402
from repmedsam_ov.intensity import choose_modality, parse_window, percentile_scale, window_ct  # noqa: E402
from repmedsam_ov.medical_io import read_volume, write_labels_3d  # noqa: E402
from repmedsam_ov.orientation import Orientation  # noqa: E402

from ..conftest import SHARED  # noqa: E402

MR = SHARED / "data" / "examples" / "imgs" / "3DBox_MR_sct_t1w-cord.npz"


def oblique_image(array: np.ndarray) -> "sitk.Image":
    """array (k, j, i) with odd spacing, origin and a rotated, permuted, flipped direction."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.31445301, 5.0))
    image.SetOrigin((-12.3, 45.67, -890.1))
    t = 0.3
    rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    permutation = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]])
    image.SetDirection(tuple((rotation @ permutation).ravel()))
    return image


def geometry(image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def signed_permutations():
    for perm in itertools.permutations(range(3)):
        for flips in itertools.product((False, True), repeat=3):
            yield list(perm), list(flips)


@pytest.fixture(scope="module")
def canonical():
    """A small canonical (identity-direction, LPS) image with distinct voxel values."""
    array = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((1.0, -2.0, 3.0))
    return image


@pytest.mark.parametrize("perm,flips", list(signed_permutations()))
def test_reorientation_matches_itk(canonical, perm, flips):
    """Any permutation/flip made by ITK's geometry filters comes back to the canonical array, exactly, and
    labels go back to the file's array exactly."""
    moved = sitk.Flip(sitk.PermuteAxes(canonical, perm), flips)
    array = sitk.GetArrayFromImage(moved)
    orientation = Orientation.from_direction(moved.GetDirection(), moved.GetSize())
    model = orientation.to_model(array)
    np.testing.assert_array_equal(model, sitk.GetArrayFromImage(canonical))
    np.testing.assert_array_equal(model, sitk.GetArrayFromImage(sitk.DICOMOrient(moved, "LPS")))
    assert orientation.to_file(model).flags.c_contiguous
    np.testing.assert_array_equal(orientation.to_file(model), array)


def test_oblique_reorientation_matches_dicomorient():
    array = np.random.default_rng(0).integers(0, 1000, (5, 6, 7)).astype(np.int16)
    image = oblique_image(array)
    model = Orientation.from_direction(image.GetDirection(), image.GetSize()).to_model(array)
    np.testing.assert_array_equal(model, sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS")))


@pytest.mark.parametrize("perm,flips", [([0, 1, 2], [False] * 3), ([0, 2, 1], [False, True, False]),
                                        ([2, 0, 1], [True, True, False]), ([1, 2, 0], [True, False, True])])
def test_boxes_follow_the_voxels(canonical, perm, flips):
    """A box's voxels, moved with the array, have the bounding box that boxes_to_model computes."""
    moved = sitk.Flip(sitk.PermuteAxes(canonical, perm), flips)
    size = moved.GetSize()
    orientation = Orientation.from_direction(moved.GetDirection(), size)
    rng = np.random.default_rng(1)
    for _ in range(20):
        lo = [int(rng.integers(0, n)) for n in size]
        hi = [int(rng.integers(a, n)) for a, n in zip(lo, size)]
        mask = np.zeros(size[::-1], bool)
        mask[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = True
        z, y, x = np.nonzero(orientation.to_model(mask))
        expected = [x.min(), y.min(), z.min(), x.max(), y.max(), z.max()]
        assert orientation.boxes_to_model(np.array([lo + hi])).tolist() == [expected]


def test_identity_orientation_keeps_boxes_exactly():
    boxes = np.array([[13, 34, 0, 42, 76, 3]])  # x_max at the far edge W is allowed in-plane
    out = Orientation.from_direction(np.eye(3).ravel(), (42, 76, 4)).boxes_to_model(boxes)
    assert out.dtype == np.int64 and out.tolist() == boxes.tolist()


def test_world_boxes_to_voxels():
    """World (LPS mm) boxes become the voxel extent of their 8 corners, as ITK maps points to indices."""
    from repmedsam_ov.medical_io import Geometry

    image = oblique_image(np.zeros((5, 6, 7), np.int16))
    index_box = [1, 2, 0, 5, 4, 3]
    corners = np.array([image.TransformIndexToPhysicalPoint([index_box[a + 3 * ((c >> a) & 1)] for a in range(3)])
                        for c in range(8)])
    world = np.concatenate([corners.min(0), corners.max(0)])[None]
    got = Geometry.of(image).world_boxes_to_index(world)
    world_corners = [[world[0, a + 3 * ((c >> a) & 1)] for a in range(3)] for c in range(8)]
    itk = np.array([image.TransformPhysicalPointToContinuousIndex(p) for p in world_corners])
    expected = np.floor(np.concatenate([itk.min(0), itk.max(0)]) + 0.5)
    assert got.dtype == np.int64 and got.tolist() == [expected.astype(int).tolist()]
    assert np.all(got[0, :3] <= index_box[:3]) and np.all(got[0, 3:] >= index_box[3:])
    # an axis-aligned (permuted, flipped) grid maps world corners back to exactly the voxel indices
    aligned = sitk.Flip(sitk.PermuteAxes(sitk.Image(7, 6, 5, sitk.sitkInt16), [2, 0, 1]), [True, False, False])
    aligned.SetSpacing((0.7, 1.3, 2.0))
    p0, p1 = (np.array(aligned.TransformIndexToPhysicalPoint(c)) for c in ((1, 2, 0), (4, 5, 6)))
    box = np.concatenate([np.minimum(p0, p1), np.maximum(p0, p1)])[None]
    assert Geometry.of(aligned).world_boxes_to_index(box).tolist() == [[1, 2, 0, 4, 5, 6]]


# ---- label maps written back in the input's geometry --------------------------------------------------------

@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_labels_round_trip_geometry_bit_for_bit(tmp_path, ext, dtype):
    array = np.random.default_rng(2).integers(-1000, 1000, (5, 6, 7)).astype(np.int16)
    source = tmp_path / f"scan{ext}"
    sitk.WriteImage(oblique_image(array), str(source))
    volume = read_volume(source)
    labels = np.random.default_rng(3).integers(0, 300 if dtype == np.uint16 else 3, array.shape).astype(dtype)
    out = tmp_path / "out" / f"seg{ext}"
    write_labels_3d(out, labels, volume)
    written, read_in = sitk.ReadImage(str(out)), sitk.ReadImage(str(source))
    assert geometry(written) == geometry(read_in)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), labels)
    assert sitk.GetArrayFromImage(written).dtype == dtype
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary files left
    if ext.startswith(".nii"):  # pixdim, units, qform and sform fields byte for byte
        a, b = (_nifti_header(p) for p in (source, out))
        assert a[40:56] == b[40:56] and a[76:108] == b[76:108] and a[252:344] == b[252:344]
    if ext == ".nrrd":
        assert _nrrd_field(source, "space directions") == _nrrd_field(out, "space directions")
        assert _nrrd_field(source, "space origin") == _nrrd_field(out, "space origin")


def _nifti_header(path: Path) -> bytes:
    data = path.read_bytes()
    return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)[:348]


def _nrrd_field(path: Path, name: str) -> str:
    for line in path.read_bytes().split(b"\n\n")[0].decode("latin-1").splitlines():
        if line.startswith(name + ":"):
            return line
    raise AssertionError(f"{path}: no {name}")


def write_dicom_series(image, folder: Path, modality: str = "CT", uid: str = "1.2.826.0.1.3680043.2.1125.7",
                       sizes: dict[int, tuple[int, int]] | None = None) -> None:
    """Writes each k-slice of a 3D int16 image as one DICOM file with its position and orientation tags."""
    folder.mkdir(parents=True, exist_ok=True)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    orientation = "\\".join(f"{v:.10g}" for v in list(direction[:, 0]) + list(direction[:, 1]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetSize()[2]):
        piece = image[:, :, k]
        if sizes and k in sizes:
            piece = sitk.Image(*sizes[k], image.GetPixelID())
        piece.SetSpacing(image.GetSpacing()[:2])
        position = "\\".join(f"{v:.10g}" for v in image.TransformIndexToPhysicalPoint((0, 0, k)))
        for key, value in [("0008|0060", modality), ("0020|000e", uid), ("0020|000d", uid + ".1"),
                           ("0008|0016", "1.2.840.10008.5.1.4.1.1.2"), ("0008|0018", f"{uid}.2.{k}"),
                           ("0020|0032", position), ("0020|0037", orientation), ("0020|0013", str(k + 1)),
                           ("0018|0050", f"{image.GetSpacing()[2]:.10g}")]:
            piece.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(piece)


def test_dicom_series_geometry_modality_and_mha_output(tmp_path):
    array = np.random.default_rng(4).integers(-1000, 1000, (4, 6, 7)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-100.0, 50.0, 20.0))
    image = sitk.Flip(sitk.PermuteAxes(image, [0, 2, 1]), [False, True, False])  # coronal slices
    write_dicom_series(image, tmp_path / "series")
    volume = read_volume(tmp_path / "series")
    assert volume.modality == "CT"
    reread = sitk.ImageSeriesReader()
    reread.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "series")))
    series = reread.Execute()
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(series))
    np.testing.assert_allclose(series.GetDirection(), image.GetDirection(), atol=1e-9)
    labels = (volume.array > 0).astype(np.uint8)
    write_labels_3d(tmp_path / "seg.mha", labels, volume)
    written = sitk.ReadImage(str(tmp_path / "seg.mha"))
    assert geometry(written) == geometry(series)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), labels)


def test_dicom_series_with_mixed_sizes_is_refused(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((4, 6, 7), np.int16))
    write_dicom_series(image, tmp_path / "mixed", sizes={2: (8, 6)})
    with pytest.raises(InputError, match=r"mixed: DICOM series with mixed slice sizes \(7x6 in 3 files .*8x6 in 1 files"):
        read_volume(tmp_path / "mixed")


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path):
    write_dicom_series(sitk.GetImageFromArray(np.zeros((5, 6, 7), np.int16)), tmp_path / "gap")
    (tmp_path / "gap" / "slice002.dcm").unlink()
    with pytest.raises(InputError, match=r"gap: DICOM slices are unevenly spaced \(gaps 1 to 2 mm"):
        read_volume(tmp_path / "gap")


def test_two_series_in_one_folder_are_refused(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((3, 6, 7), np.int16))
    write_dicom_series(image, tmp_path / "two", uid="1.2.3.4")
    image.SetOrigin((0, 0, 100))
    (tmp_path / "b").mkdir()
    write_dicom_series(image, tmp_path / "b", uid="1.2.3.5")
    for p in (tmp_path / "b").iterdir():
        p.rename(tmp_path / "two" / f"b_{p.name}")
    with pytest.raises(InputError, match=r"two: holds 2 DICOM series .*own folder"):
        read_volume(tmp_path / "two")


@pytest.mark.parametrize("ext,compress", [(".nii.gz", True), (".nii", False), (".nrrd", True), (".nrrd", False),
                                          (".mha", True), (".mha", False)])
def test_truncated_files_are_refused(tmp_path, ext, compress):
    """SimpleITK itself reads a truncated .nii.gz as zeros without a word: we must refuse it."""
    array = np.random.default_rng(5).integers(-1000, 1000, (6, 20, 30)).astype(np.int16)
    whole = tmp_path / f"whole{ext}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(whole), compress)
    np.testing.assert_array_equal(read_volume(whole).array, array)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match=r"cut\.[a-z.]+: truncated .* file: the voxel data end early"):
        read_volume(cut)


@pytest.mark.parametrize("data_file", ["LIST", "LIST 2D", "s%d.raw 0 1 0", "s%d.raw 0 1 1"])
def test_metaimage_slice_lists_are_refused_before_itk(tmp_path, data_file):
    """ITK's MetaImage reader corrupts the heap on a LIST whose names are binary data, and divides by zero on a
    pattern with step 0 (both kill the process): slice lists are refused from the header; one .raw beside a
    .mhd still reads."""
    array = np.arange(2 * 7 * 3, dtype=np.float32).reshape(2, 7, 3)
    for i in range(2):
        array[i].tofile(tmp_path / f"s{i}.raw")
    array.tofile(tmp_path / "all.raw")
    header = ("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
              "ElementSpacing = 1 1 2\nDimSize = 3 7 2\nElementType = MET_FLOAT\nElementDataFile = {}\n")
    (tmp_path / "list.mhd").write_text(header.format(data_file) + "s0.raw\ns1.raw\n")
    with pytest.raises(InputError, match=r"list\.mhd: not a readable MetaImage file .*slice files\) is not supported"):
        read_volume(tmp_path / "list.mhd")
    (tmp_path / "one.mhd").write_text(header.format("all.raw"))
    np.testing.assert_array_equal(read_volume(tmp_path / "one.mhd").array, array)


def test_png_declaring_more_than_its_file_holds_is_refused_before_decoding(tmp_path):
    """OpenCV allocates what IHDR or a chunk length declares (3.8 GB and 6 s for a 131-byte file) before it finds
    the data missing: a chunk running past the end of the file, or more pixel data than the IDAT chunks inflate to
    at deflate's best (1032:1), is refused first. Real PNGs at the best ratio pass."""
    import cv2
    from repmedsam_ov.medical_io import read_image_2d

    zeros = tmp_path / "zeros.png"  # the most compressible PNG there is: ~1026:1
    zeros.write_bytes(cv2.imencode(".png", np.zeros((4000, 4000), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])[1])
    assert read_image_2d(zeros).shape == (4000, 4000)
    data = bytearray(cv2.imencode(".png", np.ones((3, 5, 4), np.uint8))[1].tobytes())
    data[17] ^= 0xDB  # width 5 -> 14,352,389 (the CRC still fails, but only after the allocation)
    flipped = tmp_path / "flipped.png"
    flipped.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"flipped\.png: truncated or corrupt PNG: its header declares 14352389x3 pixels "
                                         r"\(172,228,671 bytes of pixel data\), more than its \d+ bytes of compressed data"):
        read_image_2d(flipped)
    data = bytearray(cv2.imencode(".png", np.ones((30, 50, 3), np.uint8))[1].tobytes())
    data[33] = 0xF8  # the IDAT chunk's length: 4 GB (OpenCV reads the chunk into memory first)
    flipped.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"flipped\.png: truncated or corrupt PNG: its 'IDAT' chunk at byte 33 declares "
                                         r"4,1\d\d,\d{3},\d{3} bytes, but only \d+ follow"):
        read_image_2d(flipped)


def test_not_a_volume(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"hello")
    with pytest.raises(InputError, match=r"bad\.nii\.gz: (not a readable|truncated) NIfTI"):
        read_volume(bad)
    with pytest.raises(InputError, match="missing.nrrd: no such file"):
        read_volume(tmp_path / "missing.nrrd")
    vector = tmp_path / "rgb.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 3), np.uint8), isVector=True), str(vector))
    with pytest.raises(InputError, match="rgb.mha: has 3 components per voxel"):
        read_volume(vector)


def test_real_example_volume_round_trip(tmp_path):
    """The spinal-cord MR example written as NIfTI with a non-identity direction reads back as its npz array."""
    with np.load(MR) as case:
        imgs = case["imgs"]
    image = sitk.Flip(sitk.PermuteAxes(sitk.GetImageFromArray(imgs), [1, 2, 0]), [True, False, True])
    sitk.WriteImage(image, str(tmp_path / "mr.nii.gz"))
    volume = read_volume(tmp_path / "mr.nii.gz")
    g = volume.geometry
    np.testing.assert_array_equal(Orientation.from_direction(g.direction, g.size).to_model(volume.array), imgs)


# ---- box files -----------------------------------------------------------------------------------------------

def test_box_files(tmp_path):
    scan = tmp_path / "scan.nii.gz"
    (tmp_path / "scan.boxes.json").write_text(json.dumps({"image": "scan.nii.gz", "space": "world", "size": [7, 6, 5],
                                                          "boxes": [[1, 2, 0, 5, 4, 3], [0.5, 1, 1, 2, 3, 4]]}))
    found = find_box_file(scan, None)
    spec = load_boxes(found, scan, 6)
    assert found.name == "scan.boxes.json" and spec.space == "world" and spec.size == (7, 6, 5) and spec.names_image
    assert spec.boxes.dtype == np.float64 and spec.boxes.tolist()[1] == [0.5, 1, 1, 2, 3, 4]
    (tmp_path / "bare.json").write_text("[[1, 2, 3, 4]]")
    bare = load_boxes(tmp_path / "bare.json", tmp_path / "photo.png", 4)
    assert bare.boxes.dtype == np.int64 and not bare.names_image
    csv = tmp_path / "all.csv"
    csv.write_text("image,x_min,y_min,z_min,x_max,y_max,z_max\nscan.nii.gz,1,2,0,5,4,3\nother.nii.gz,0,0,0,1,1,1\n"
                   "scan.nii.gz,2,2,1,3,3,2\n")
    assert load_boxes(csv, scan, 6).boxes.tolist() == [[1, 2, 0, 5, 4, 3], [2, 2, 1, 3, 3, 2]]


@pytest.mark.parametrize("content,name,columns,message", [
    ('{"image": "other.nii.gz", "boxes": [[1, 2, 0, 5, 4, 3]]}', "b.json", 6,
     r"b.json: is the box file for 'other.nii.gz', not for scan.nii.gz"),
    ("image,x_min,y_min,z_min,x_max,y_max,z_max\nother.nii,1,2,0,5,4,3\n", "b.csv", 6,
     r"b.csv: has no boxes for scan.nii.gz \(its image column names: other.nii\)"),
    ("[[1, 2, 3, 4]]", "b.json", 6, r"b.json: has 4-value boxes but scan.nii.gz is a 3D volume"),
    ('{"boxes": [[1, 2, 0, 5, 4]]}', "b.json", 6, r"boxes\[0\] = \[1, 2, 0, 5, 4\]: expected 4 or 6 numbers"),
    ('{"box": []}', "b.json", 6, r"b.json: expected a list of boxes or an object with \"boxes\""),
    ('{"boxes": [], "imgae": "x"}', "b.json", 6, r"unknown key 'imgae'"),
    ("[]", "b.json", 6, "b.json: no boxes"),
    ("{", "b.json", 6, "b.json: not valid JSON"),
    ("x,y\n1,2\n", "b.csv", 6, "b.csv: header .* lacks box columns"),
    ("x_min,y_min,z_min,x_max,y_max,z_max\n1,2,zero,5,4,3\n", "b.csv", 6, "expected numbers in columns"),
])
def test_bad_box_files(tmp_path, content, name, columns, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=message):
        load_boxes(tmp_path / name, tmp_path / "scan.nii.gz", columns)


def test_missing_box_file_names_the_expected_sidecar(tmp_path):
    with pytest.raises(InputError, match=r"scan.nii.gz: no box file: expected .*scan.boxes.json \(or .boxes.csv\)"):
        find_box_file(tmp_path / "scan.nii.gz", None)


# ---- intensity ------------------------------------------------------------------------------------------------

def test_ct_window_like_medsam():
    hu = np.array([-1000, -160, 40, 239, 240, 3000], np.int16)
    # soft tissue: clip to [-160, 240], then (x + 160) / 400 * 255, truncated
    assert window_ct(hu, *parse_window("soft-tissue")).tolist() == [0, 0, 127, 254, 255, 255]
    assert window_ct(hu, *parse_window("400,40")).tolist() == [0, 0, 127, 254, 255, 255]
    assert window_ct(np.array([-2000, -600, 150]), *parse_window("lung")).tolist() == [0, 127, 255]
    # like pre_CT_MR.py, the clipped volume is min-max scaled: a volume inside the window is stretched
    assert window_ct(np.array([-1000, -600, 150]), *parse_window("lung")).tolist() == [0, 88, 255]
    assert parse_window("bone") == (1800.0, 400.0)


def test_percentile_scaling_keeps_zeros_and_clips_outliers():
    values = np.concatenate([np.zeros(10), np.arange(1, 1001, dtype=np.float64)])
    out = percentile_scale(values)
    lo, hi = np.percentile(np.arange(1, 1001), [0.5, 99.5])
    assert out[:10].tolist() == [0] * 10
    expected = ((np.clip(values[10:], lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out[10:], expected)
    assert out.max() == 255 and out[10] == 0


def test_modality_choice():
    hu = np.array([-1024, 0, 500], np.int16)
    assert choose_modality("auto", hu, None)[0] == "ct"
    assert choose_modality("auto", hu, "MR")[0] == "mr"
    assert choose_modality("auto", hu, "PT")[0] == "pet"
    assert choose_modality("auto", np.array([0, 200], np.uint8), None)[0] == "none"
    assert choose_modality("auto", np.array([0.0, 812.5]), None)[0] == "other"
    assert choose_modality("mr", hu, "CT") == ("mr", "--modality")
