"""Hypothesis strategies for every input `repmedsam-ov infer` reads, valid and hostile.

Each strategy draws a `Hostile`: the bytes of every file of one case (the input and its box file), which input
to pass on the command line, and its reader's name ("npz", "boxes-json", "nifti", ...). A case is pure data, so
a failing one prints, replays and goes into the corpus (tests/fuzz/corpus/) as it is. Builders start from a
small valid file (written by numpy, SimpleITK or OpenCV) and mutate it: header fields set to hostile values
(zero, negative, NaN, huge), names with `../` and absolute paths, truncation at a random offset, flipped bytes.
No torch; SimpleITK and OpenCV are needed.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

SHARED_DATA = Path(os.environ.get("REPMEDSAM_SHARED", Path(__file__).resolve().parents[2].parent / "shared")) / "data"

# numbers a hostile header or box file holds
NASTY_INTS = [0, 1, 2, 3, 4, 5, 7, 8, -1, -2, 255, 256, 32767, -32768, 65535, 2**31 - 1, -2**31, 2**32 + 1, 10**12]
NASTY_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-30, 1e30, -1e30, float("nan"), float("inf"), float("-inf"), 3.4e38]
NASTY_NAMES = ["../escape", "../../escape.nii.gz", "/ABS/escape.png", "..", ".", "", "a/b/c.mha", "nul\x00name",
               "C:\\windows\\x.nii", "~/x.npz", "con", "x" * 300]


@dataclass
class Hostile:
    """One fuzz case. files: relative path -> bytes (a path ending in '/' is a folder); inputs: the relative
    paths given to `infer`; args: extra CLI arguments; reader: the reader under test (for counts)."""

    reader: str
    files: dict[str, bytes]
    inputs: list[str]
    args: list[str] = field(default_factory=list)
    note: str = ""

    def __repr__(self) -> str:  # short: hypothesis prints failing examples
        sizes = {k: len(v) for k, v in self.files.items()}
        return f"Hostile({self.reader!r}, files={sizes}, inputs={self.inputs}, args={self.args}, note={self.note!r})"


# --------------------------------------------------------------------------- mutations of bytes

@st.composite
def mutated(draw, data: bytes, protect: int = 0) -> tuple[bytes, str]:
    """data unchanged, cut at a random offset, or with 1-8 bytes flipped/overwritten (after `protect` bytes)."""
    how = draw(st.sampled_from(["keep", "cut", "flip", "cut", "flip", "zero-tail", "append"]))
    if how == "keep" or not data:
        return data, "keep"
    if how == "cut":
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        return data[:at], f"cut@{at}"
    if how == "zero-tail":
        at = draw(st.integers(0, len(data)))
        return data[:at] + bytes(len(data) - at), f"zero@{at}"
    if how == "append":
        return data + draw(st.binary(min_size=1, max_size=64)), "append"
    out = bytearray(data)
    spots = draw(st.lists(st.integers(min(protect, len(data) - 1), len(data) - 1), min_size=1, max_size=8))
    for at in spots:
        out[at] = draw(st.integers(0, 255))
    return bytes(out), f"flip{sorted(spots)[:4]}"


# --------------------------------------------------------------------------- box values

def nasty_number():
    return st.one_of(st.integers(-5, 70), st.sampled_from(NASTY_INTS), st.sampled_from(NASTY_FLOATS),
                     st.floats(-10, 100))


def box_row(columns: int, size: tuple[int, ...]):
    """A box that is usually valid for an image of `size` (W, H[, D]), sometimes hostile."""
    def valid(draw_ints):
        lo = [draw_ints[i] % max(size[i], 1) for i in range(len(size))]
        hi = [lo[i] + draw_ints[len(size) + i] % max(size[i] - lo[i], 1) for i in range(len(size))]
        return lo + hi

    valid_row = st.lists(st.integers(0, 1000), min_size=2 * len(size), max_size=2 * len(size)).map(valid)
    hostile_row = st.lists(nasty_number(), min_size=columns, max_size=columns)
    odd = st.one_of(st.lists(nasty_number(), max_size=8), st.just("1,2,3,4"), st.none(), st.just([True] * columns),
                    st.just([[1, 2], [3, 4]]), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
    return st.one_of(valid_row, valid_row, valid_row, hostile_row, odd)


@st.composite
def box_json(draw, image_name: str, size: tuple[int, ...], other_names: list[str]) -> tuple[bytes, str]:
    """A JSON box file for an image named image_name of size (W, H[, D])."""
    columns = 2 * len(size)
    if draw(st.integers(0, 19)) == 0:  # anything JSON
        value = draw(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                                  lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
                                  max_leaves=12))
        return json.dumps(value).encode(), "any-json"
    many = draw(st.integers(0, 49)) == 0
    rows = draw(st.lists(box_row(columns, size), min_size=0 if not many else 300, max_size=4 if not many else 2000))
    if draw(st.booleans()):
        return json.dumps(rows).encode(), f"bare-list n={len(rows)}"
    data = {"boxes": rows}
    if draw(st.booleans()):
        data["image"] = draw(st.sampled_from([image_name, image_name, *other_names, *NASTY_NAMES, 7, None, ["x"]]))
    if draw(st.integers(0, 3)) == 0:
        data["space"] = draw(st.sampled_from(["voxel", "world", "VOXEL", "pixel", 1, None]))
    if draw(st.integers(0, 2)) == 0:
        data["size"] = draw(st.sampled_from([list(size), list(size)[::-1], [0] * len(size), [-1] * len(size),
                                             [10**12] * len(size), "big", [1.5] * len(size), [True] * len(size)]))
    if draw(st.integers(0, 9)) == 0:
        data[draw(st.sampled_from(["extra", "Boxes", "labels"]))] = 1
    if draw(st.integers(0, 9)) == 0:
        del data["boxes"]
    text = json.dumps(data, allow_nan=True).encode()
    if draw(st.integers(0, 9)) == 0:
        text, how = draw(mutated(text))
        return text, f"json-mutated {how}"
    return text, f"json n={len(rows)}"


@st.composite
def box_csv(draw, image_name: str, size: tuple[int, ...], other_names: list[str]) -> tuple[bytes, str]:
    columns = ["x_min", "y_min", "z_min", "x_max", "y_max", "z_max"] if len(size) == 3 else \
        ["x_min", "y_min", "x_max", "y_max"]
    header = list(columns)
    if draw(st.integers(0, 4)) == 0:
        header = draw(st.permutations(header))
    if draw(st.integers(0, 5)) == 0:
        header = draw(st.lists(st.sampled_from(columns + ["image", "X_MIN", "label", "", "z_min"]), max_size=8))
    with_image = draw(st.booleans())
    if with_image:
        header = ["image", *header]
    many = draw(st.integers(0, 49)) == 0
    rows = []
    for row in draw(st.lists(box_row(len(columns), size), min_size=0 if not many else 300, max_size=4 if not many else 2000)):
        cells = [str(v) for v in row] if isinstance(row, list) else [str(row)]
        cells = [c for c in cells]
        if draw(st.integers(0, 15)) == 0 and cells:
            cells[0] = draw(st.sampled_from(["", "nan", "inf", "1e999", " 3 ", "0x10", "1_0", "\u0663", "3.", "-"]))
        if with_image:
            cells = [draw(st.sampled_from([image_name, image_name, *other_names, *NASTY_NAMES]))] + cells
        rows.append(cells)
    buf = io.StringIO()
    import csv

    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    text = buf.getvalue().encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        text = b"\xef\xbb\xbf" + text
    if draw(st.integers(0, 9)) == 0:
        text, how = draw(mutated(text))
        return text, f"csv-mutated {how}"
    return text, f"csv n={len(rows)}"


@st.composite
def box_file(draw, stem: str, image_name: str, size: tuple[int, ...], other_names: list[str]):
    """(relative path, bytes, note) of a sidecar box file, or None (no box file at all, rarely)."""
    if draw(st.integers(0, 29)) == 0:
        return None
    if draw(st.booleans()):
        data, note = draw(box_json(image_name, size, other_names))
        return f"{stem}.boxes.json", data, note
    data, note = draw(box_csv(image_name, size, other_names))
    return f"{stem}.boxes.csv", data, note


# --------------------------------------------------------------------------- npz

def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=True)
    return buf.getvalue()


def npy_header(shape, dtype="|u1") -> bytes:
    """An npy v1 header declaring `shape` (no data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def zip_members(members: dict[str, bytes], compress: bool = True) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def patch_declared_size(data: bytes, name: str, size: int) -> bytes:
    """A zip whose member `name` declares `size` uncompressed bytes in its local and central headers."""
    out = bytearray(data)
    raw = name.encode()
    at = 0
    while (at := out.find(b"PK\x03\x04", at)) >= 0:  # local headers: size at +22
        if out[at + 30:at + 30 + len(raw)] == raw:
            struct.pack_into("<I", out, at + 22, size & 0xFFFFFFFF)
        at += 4
    at = 0
    while (at := out.find(b"PK\x01\x02", at)) >= 0:  # central directory: size at +24
        if out[at + 46:at + 46 + len(raw)] == raw:
            struct.pack_into("<I", out, at + 24, size & 0xFFFFFFFF)
        at += 4
    return bytes(out)


def zip_bomb(shape=(4000, 4000, 100), data_bytes: int = 4 << 20) -> bytes:
    """imgs.npy declaring `shape` uint8 (1.6 GB by default) with `data_bytes` of zeros, deflated (a few KB)."""
    member = npy_header(shape) + bytes(data_bytes)
    boxes = _npy_bytes(np.array([[0, 0, 0, 1, 1, 1]]))
    return zip_members({"imgs.npy": member, "boxes.npy": boxes})


DTYPES = [np.uint8, np.uint8, np.uint8, np.int16, np.float32, np.float64, np.bool_, np.int64, np.complex64,
          np.dtype("<U2"), np.dtype("M8[s]"), np.dtype(">u2"), np.dtype([("a", "u1")])]


@st.composite
def hostile_array(draw, kind: str):
    """An array for key `kind` ('imgs', 'boxes', 'spacing', other): usually plausible, often not."""
    choice = draw(st.integers(0, 9))
    if kind == "imgs" and choice < 6:
        shape = draw(st.sampled_from([(0, 0), (1, 1), (1, 1, 3), (3, 1, 1), (2, 2, 2)]) | st.tuples(
            st.integers(1, 40), st.integers(1, 40)).flatmap(lambda hw: st.sampled_from(
                [hw, (*hw, 3), (draw(st.integers(1, 5)), *hw), (*hw, 4), (*hw, 1)])))
        dtype = np.uint8 if choice < 5 else draw(st.sampled_from(DTYPES))
        return np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 255, shape).astype(dtype)
    if kind == "boxes" and choice < 7:
        n = draw(st.integers(0, 4))
        columns = draw(st.sampled_from([4, 6, 4, 6, 5, 3, 0]))
        values = draw(st.lists(st.one_of(st.integers(0, 40), st.sampled_from(NASTY_INTS + NASTY_FLOATS)),
                               min_size=n * columns, max_size=n * columns))
        dtype = draw(st.sampled_from([np.int64, np.float64, np.int32, np.float32, np.uint8, object]))
        with np.errstate(all="ignore"):
            try:
                return np.array(values, dtype=dtype).reshape(n, columns)
            except (OverflowError, ValueError):
                return np.array(values, dtype=np.float64).reshape(n, columns)
    if kind == "spacing" and choice < 7:
        return np.array(draw(st.lists(st.sampled_from(NASTY_FLOATS + [2.5]), min_size=0, max_size=4)))
    if choice == 9:
        return np.array([{"a": 1}, "pickle"], dtype=object)
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    dtype = draw(st.sampled_from(DTYPES))
    return np.zeros(shape, dtype)


@st.composite
def npz_case(draw) -> Hostile:
    """A challenge .npz: hostile arrays, keys, archives (zip bombs, declared sizes, pickles), mutated bytes."""
    style = draw(st.sampled_from(["arrays", "arrays", "arrays", "valid-mutated", "bomb", "declared", "npy",
                                  "garbage", "members"]))
    if style == "bomb":
        shape = draw(st.sampled_from([(4000, 4000, 100), (100000, 100000, 3), (2**20, 2**20, 2**20), (2**62, 2)]))
        data, note = zip_bomb(shape, 1 << 16), f"bomb {shape}"
    elif style == "declared":
        good = zip_members({"imgs.npy": _npy_bytes(np.zeros((8, 8, 3), np.uint8)),
                            "boxes.npy": _npy_bytes(np.array([[0, 0, 4, 4]]))})
        size = draw(st.sampled_from([0, 10, 2**31, 2**32 - 1]))
        data, note = patch_declared_size(good, draw(st.sampled_from(["imgs.npy", "boxes.npy"])), size), f"declared {size}"
    elif style == "npy":
        data, note = _npy_bytes(np.zeros((4, 4, 3), np.uint8)), "single npy"
    elif style == "garbage":
        data, note = draw(st.binary(max_size=300)), "garbage"
        if draw(st.booleans()):
            data = b"PK\x03\x04" + data
    elif style == "members":
        names = draw(st.lists(st.sampled_from(["imgs", "imgs.npy", "boxes.npy", "boxes", "../imgs.npy", "/abs.npy",
                                               "spacing.npy", "dir/", "imgs.npy.npy"]), max_size=4, unique=True))
        members = {n: draw(st.sampled_from([_npy_bytes(np.zeros((4, 4), np.uint8)), b"", b"\x93NUMPY\x01\x00\xff\xff",
                                            _npy_bytes(np.array([[0, 0, 1, 1]])), npy_header((2**40,))]))
                   for n in names}
        data, note = zip_members(members, draw(st.booleans())), f"members {names}"
    else:
        arrays = {}
        for key in ("imgs", "boxes", "spacing"):
            if draw(st.integers(0, 9)) > (0 if key != "spacing" else 6):
                arrays[key] = draw(hostile_array(key))
        if draw(st.integers(0, 9)) == 0:
            arrays[draw(st.sampled_from(["segs", "IMGS", "extra"]))] = np.zeros(2)
        if style == "valid-mutated":
            arrays = {"imgs": np.random.default_rng(1).integers(0, 255, (3, 12, 12), dtype=np.uint8),
                      "boxes": np.array([[1, 1, 0, 8, 8, 2]])}
        buf = io.BytesIO()
        savez = np.savez_compressed if draw(st.booleans()) else np.savez
        savez(buf, **arrays)
        data = buf.getvalue()
        note = ", ".join(f"{k}{getattr(v, 'shape', '')}:{getattr(v, 'dtype', '')}" for k, v in arrays.items())
        if style == "valid-mutated" or draw(st.integers(0, 4)) == 0:
            data, how = draw(mutated(data))
            note += " " + how
    return Hostile("npz", {"case.npz": data}, ["case.npz"], note=note)


# --------------------------------------------------------------------------- volumes (SimpleITK-written, then mutated)

def _sitk():
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    return sitk


def volume_bytes(array: np.ndarray, ext: str, spacing=(1.0, 1.0, 2.0), compress: bool = False) -> bytes:
    """array (k, j, i) written by SimpleITK as `ext` (.nii, .nii.gz, .nrrd, .mha): the file's bytes."""
    sitk = _sitk()
    image = sitk.GetImageFromArray(array, isVector=array.ndim == 4)
    image.SetSpacing(spacing[:image.GetDimension()])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"v{ext}"
        sitk.WriteImage(image, str(path), compress)
        return path.read_bytes()


@st.composite
def small_volume(draw):
    shape = draw(st.tuples(st.integers(1, 5), st.integers(1, 12), st.integers(1, 12)))
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.int16, np.float32, np.uint16, np.float64, np.int8]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    array = rng.integers(-1000 if np.dtype(dtype).kind in "if" else 0, 255, shape).astype(dtype)
    if draw(st.integers(0, 9)) == 0:  # 4D or vector
        array = np.stack([array, array], axis=draw(st.sampled_from([0, 3])))
    return array


def _with_boxes(draw, reader, name, data, size, note, other=("other.nii.gz",)):
    files = {name: data}
    from repmedsam_ov.medical_io import split_ext

    stem = split_ext(Path(name))[0]
    box = draw(box_file(stem, name, size, list(other)))
    if box is not None:
        files[box[0]] = box[1]
        note += f" | {box[2]}"
    return Hostile(reader, files, [name], note=note)


NIFTI_FIELDS = {  # name: (offset, struct format)
    "dim0": (40, "h"), "dim1": (42, "h"), "dim2": (44, "h"), "dim3": (46, "h"), "dim4": (48, "h"), "dim5": (50, "h"),
    "datatype": (70, "h"), "bitpix": (72, "h"), "pixdim0": (76, "f"), "pixdim1": (80, "f"), "pixdim2": (84, "f"),
    "pixdim3": (88, "f"), "vox_offset": (108, "f"), "scl_slope": (112, "f"), "scl_inter": (116, "f"),
    "qform_code": (252, "h"), "sform_code": (254, "h"), "quatern_b": (256, "f"), "quatern_c": (260, "f"),
    "qoffset_x": (268, "f"), "srow_x0": (280, "f"), "srow_y1": (300, "f"), "srow_z2": (320, "f"), "sizeof_hdr": (0, "i"),
    "magic": (344, "4s"),
}


@st.composite
def nifti_case(draw) -> Hostile:
    array = draw(small_volume())
    gz = draw(st.booleans())
    data = bytearray(volume_bytes(array, ".nii"))
    fields = draw(st.lists(st.sampled_from(sorted(NIFTI_FIELDS)), max_size=4, unique=True))
    notes = []
    for name in fields:
        offset, fmt = NIFTI_FIELDS[name]
        if fmt == "h":
            value = draw(st.sampled_from([v for v in NASTY_INTS if -32768 <= v <= 32767] + [16, 512, 2048, 128]))
        elif fmt == "i":
            value = draw(st.sampled_from([348, 540, 0, -1, 1 << 24]))
        elif fmt == "4s":
            value = draw(st.sampled_from([b"ni1\x00", b"n+2\x00", b"\x00\x00\x00\x00", b"n+1\x00"]))
        else:
            value = draw(st.sampled_from(NASTY_FLOATS))
        struct.pack_into("<" + fmt, data, offset, value)
        notes.append(f"{name}={value!r}")
    if draw(st.integers(0, 9)) == 0:  # descrip / aux_file hold names: never paths
        data[148:228] = draw(st.sampled_from(NASTY_NAMES)).encode("utf-8", "replace")[:80].ljust(80, b"\x00")
        data[228:252] = b"../../escape.nii".ljust(24, b"\x00")
    data = bytes(data)
    data, how = draw(mutated(data))
    if gz:
        data = gzip.compress(data, 1, mtime=0)
        if draw(st.integers(0, 4)) == 0:
            data, how2 = draw(mutated(data))
            how += " gz-" + how2
    name = "scan.nii.gz" if gz else "scan.nii"
    size = tuple(reversed(array.shape[:3]))
    return _with_boxes(draw, "nifti", name, data, size, f"{array.shape}:{array.dtype} {notes} {how}")


NRRD_VALUES = {
    "dimension": ["3", "4", "2", "0", "-1", "100", "x"],
    "sizes": ["1 1 1", "0 4 4", "-3 4 4", "100000 100000 100000", "4 4", "4 4 4 4", "65536 65536 1", "a b c", ""],
    "type": ["uint8", "short", "double", "block", "int64", "float", "???"],
    "encoding": ["raw", "gzip", "bzip2", "ascii", "hex", "txt", "zstd"],
    "space directions": ["(0,0,0) (0,1,0) (0,0,1)", "(1,0,0) (0,1,0) none", "none (1,0,0) (0,1,0) (0,0,1)",
                         "(nan,0,0) (0,1,0) (0,0,1)", "(1e308,0,0) (0,1,0) (0,0,1)", "(1,0,0) (1,0,0) (0,0,1)"],
    "spacings": ["0 0 0", "-1 1 1", "nan nan nan", "1 1"],
    "kinds": ["vector domain domain domain", "RGB-color domain domain", "domain domain domain", "list"],
    "data file": ["../../escape.raw", "/etc/hostname", "LIST", "slice%03d.raw 0 100 1", "case.npz"],
    "space origin": ["(nan,nan,nan)", "(1e308,0,0)", "(0,0)"],
    "endian": ["big", "little", "middle"],
    "byte skip": ["-1", "1000000", "x"],
    "line skip": ["5", "-1"],
}


@st.composite
def nrrd_case(draw) -> Hostile:
    array = draw(small_volume())
    data = volume_bytes(array, ".nrrd", compress=draw(st.booleans()))
    head, sep, body = data.partition(b"\n\n")
    lines = head.decode("latin-1").split("\n")
    notes = []
    for key in draw(st.lists(st.sampled_from(sorted(NRRD_VALUES)), max_size=3, unique=True)):
        lines = [l for l in lines if not l.lower().startswith(key + ":")]
        if draw(st.integers(0, 5)):
            value = draw(st.sampled_from(NRRD_VALUES[key]))
            lines.append(f"{key}: {value}")
            notes.append(f"{key}: {value}")
        else:
            notes.append(f"-{key}")
    data = "\n".join(lines).encode("latin-1") + sep + body
    data, how = draw(mutated(data))
    size = tuple(reversed(array.shape[:3]))
    return _with_boxes(draw, "nrrd", "scan.nrrd", data, size, f"{array.shape}:{array.dtype} {notes} {how}")


MHA_VALUES = {
    "NDims": ["3", "4", "2", "0", "-1", "9"],
    "DimSize": ["1 1 1", "0 4 4", "-3 4 4", "100000 100000 100000", "4 4", "4 4 4 4", "4294967297 1 1"],
    "ElementType": ["MET_UCHAR", "MET_DOUBLE", "MET_STRING", "MET_NONE", "MET_FLOAT", "???"],
    "ElementSpacing": ["0 0 0", "-1 1 1", "nan 1 1", "1 1"],
    "ElementNumberOfChannels": ["3", "0", "-1", "100000"],
    "ElementDataFile": ["../../escape.raw", "/etc/hostname", "LIST", "slice%03d.raw 0 100 1", "LOCAL"],
    "CompressedData": ["True", "False", "maybe"],
    "CompressedDataSize": ["1", "0", "99999999999"],
    "TransformMatrix": ["0 0 0 0 0 0 0 0 0", "nan 0 0 0 1 0 0 0 1", "1 0 0 1 0 0 0 0 1"],
    "HeaderSize": ["-1", "0", "1000000"],
    "BinaryDataByteOrderMSB": ["True", "False"],
}


@st.composite
def mha_case(draw) -> Hostile:
    array = draw(small_volume())
    data = volume_bytes(array, ".mha", compress=draw(st.booleans()))
    at = data.find(b"ElementDataFile = LOCAL\n")
    head, body = (data[:at], data[at:]) if at >= 0 else (data, b"")
    lines = head.decode("latin-1").split("\n")
    notes = []
    for key in draw(st.lists(st.sampled_from(sorted(MHA_VALUES)), max_size=3, unique=True)):
        lines = [l for l in lines if not l.startswith(key + " ")]
        value = draw(st.sampled_from(MHA_VALUES[key]))
        notes.append(f"{key} = {value}")
        if key == "ElementDataFile":
            body = f"ElementDataFile = {value}\n".encode() + body.split(b"\n", 1)[-1]
        else:
            lines.insert(max(len(lines) - 1, 0), f"{key} = {value}")
    data = "\n".join(lines).encode("latin-1") + body
    data, how = draw(mutated(data))
    size = tuple(reversed(array.shape[:3]))
    return _with_boxes(draw, "mha", "scan.mha", data, size, f"{array.shape}:{array.dtype} {notes} {how}")


# --------------------------------------------------------------------------- DICOM series

def dicom_slices(array: np.ndarray, uid: str = "1.2.826.0.1.3680043.2.1125.7", modality: str = "CT",
                 spacing=(0.7, 0.7, 2.0), description: str = "series") -> list[bytes]:
    """Each (k) slice of an int16 (k, j, i) array as one DICOM file's bytes with position tags."""
    sitk = _sitk()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        for k in range(array.shape[0]):
            piece = sitk.GetImageFromArray(array[k])
            piece.SetSpacing(spacing[:2])
            for key, value in [("0008|0060", modality), ("0020|000e", uid), ("0020|000d", uid + ".1"),
                               ("0008|0016", "1.2.840.10008.5.1.4.1.1.2"), ("0008|0018", f"{uid}.2.{k}"),
                               ("0020|0032", f"0\\0\\{k * spacing[2]:.6g}"), ("0020|0037", "1\\0\\0\\0\\1\\0"),
                               ("0020|0013", str(k + 1)), ("0018|0050", f"{spacing[2]:.6g}"),
                               ("0008|103e", description), ("0010|0010", description)]:
                piece.SetMetaData(key, value)
            writer.SetFileName(str(Path(tmp) / f"s{k}.dcm"))
            writer.Execute(piece)
            out.append((Path(tmp) / f"s{k}.dcm").read_bytes())
    return out


@st.composite
def dicom_case(draw) -> Hostile:
    depth = draw(st.integers(1, 5))
    h, w = draw(st.integers(2, 10)), draw(st.integers(2, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    array = rng.integers(-1000, 1000, (depth, h, w)).astype(np.int16)
    description = draw(st.sampled_from(["series", "../../escape", "/ABS/escape", "a\\b"]))
    slices = dicom_slices(array, description=description, modality=draw(st.sampled_from(["CT", "MR", "PT", "XX", ""])))
    name = "series"
    files = {f"{name}/s{k:03d}.dcm": data for k, data in enumerate(slices)}
    notes = [f"{array.shape} desc={description!r}"]
    for _ in range(draw(st.integers(0, 2))):
        trick = draw(st.sampled_from(["second-series", "drop-middle", "other-size", "duplicate", "junk-file",
                                      "mutate-one", "empty-file", "subfolder"]))
        notes.append(trick)
        keys = sorted(files)
        if trick == "second-series":
            other = dicom_slices(array[:2], uid="1.2.826.0.1.3680043.2.1125.8")
            files.update({f"{name}/t{k}.dcm": d for k, d in enumerate(other)})
        elif trick == "drop-middle" and len(keys) > 2:
            del files[keys[len(keys) // 2]]
        elif trick == "other-size":
            odd = dicom_slices(np.zeros((depth + 1, h + 1, w), np.int16))[-1]
            files[f"{name}/odd.dcm"] = odd
        elif trick == "duplicate" and keys:
            files[f"{name}/dup.dcm"] = files[keys[0]]
        elif trick == "junk-file":
            files[f"{name}/README.txt"] = b"not dicom"
        elif trick == "mutate-one" and keys:
            key = draw(st.sampled_from(keys))
            files[key], how = draw(mutated(files[key]))
            notes.append(how)
        elif trick == "empty-file":
            files[f"{name}/empty.dcm"] = b""
        elif trick == "subfolder":
            files[f"{name}/sub/s.dcm"] = slices[0]
    size = (w, h, depth)
    box = draw(box_file(name, name, size, ["other_series"]))
    if box is not None:
        files[box[0]] = box[1]
        notes.append(box[2])
    return Hostile("dicom", files, [name], note=" ".join(notes))


# --------------------------------------------------------------------------- 2D images

def png_with_size(width: int, height: int, channels_code: int = 0) -> bytes:
    """A PNG header declaring width x height (valid CRC), with a tiny IDAT: decoders must not trust it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, channels_code, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


@st.composite
def image_case(draw) -> Hostile:
    import cv2

    ext = draw(st.sampled_from([".png", ".png", ".jpg", ".tif", ".jpeg", ".tiff"]))
    style = draw(st.integers(0, 9))
    if style == 0:
        w, h = draw(st.sampled_from([(100000, 100000), (2**31 - 1, 1), (1, 100000), (0, 5), (65535, 65535)]))
        data, shape, note = png_with_size(w, h, draw(st.sampled_from([0, 2, 6]))), (h, w), f"declared {w}x{h}"
        ext = ".png"
    else:
        shape = draw(st.sampled_from([(1, 1), (1, 2000), (2000, 1), (3, 5)]) | st.tuples(st.integers(1, 48),
                                                                                           st.integers(1, 48)))
        if draw(st.integers(0, 19)) == 0:
            shape = (1, 100000)
        channels = draw(st.sampled_from([None, None, 3, 4, 1, 2]))
        dtype = draw(st.sampled_from([np.uint8, np.uint8, np.uint16, np.float32]))
        if ext in (".jpg", ".jpeg"):
            dtype, channels = np.uint8, draw(st.sampled_from([None, 3]))
        if ext == ".png" and dtype == np.float32:
            dtype = np.uint16
        if channels == 2 and ext != ".tif":
            channels = None
        full = shape if channels is None else (*shape, channels)
        array = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 255, full).astype(dtype)
        try:
            ok, buf = cv2.imencode(".tif" if ext == ".tiff" else ext, array)
            data = buf.tobytes() if ok else b""
        except cv2.error:  # a combination the encoder refuses (2 channels, > 65500 pixels in JPEG): empty file
            data = b""
        note = f"{full}:{np.dtype(dtype).name}"
        data, how = draw(mutated(data))
        note += " " + how
    name = f"photo{ext}"
    size = (shape[1], shape[0])
    return _with_boxes(draw, "image", name, data, size, note, other=("other.png",))


# --------------------------------------------------------------------------- real files, cut and flipped

def real_files() -> list[Path]:
    picks = sorted((SHARED_DATA / "examples" / "imgs").glob("*.npz"))
    picks += sorted((SHARED_DATA / "eval" / "imgs").glob("2DBox_Dermoscopy*.npz"))[:1]
    picks += sorted((SHARED_DATA / "train" / "2d" / "busi").glob("*benign026.png"))[:1]
    return [p for p in picks if p.is_file() and p.stat().st_size < 4 << 20]


@st.composite
def real_case(draw) -> Hostile:
    files = real_files()
    source = draw(st.sampled_from(files))
    data, how = draw(mutated(source.read_bytes()))
    if how == "keep":
        data, how = draw(mutated(data))
    if source.suffix == ".png":
        return _with_boxes(draw, "real-png", "real.png", data, (10, 10), f"{source.name} {how}")
    return Hostile("real-npz", {"real.npz": data}, ["real.npz"], note=f"{source.name} {how}")


READERS = {"npz": npz_case, "nifti": nifti_case, "nrrd": nrrd_case, "mha": mha_case, "dicom": dicom_case,
           "image": image_case, "real": real_case}


_VALID_PNG: dict[str, bytes] = {}


def _valid_inputs() -> dict[str, tuple[bytes, tuple[int, ...]]]:
    """A 20x16 RGB PNG and a 12x10x4 NIfTI, built once: the images the box-file cases point at."""
    if not _VALID_PNG:
        import cv2

        rng = np.random.default_rng(0)
        _VALID_PNG["photo.png"] = cv2.imencode(".png", rng.integers(0, 255, (16, 20, 3), dtype=np.uint8))[1].tobytes()
        _VALID_PNG["scan.nii.gz"] = volume_bytes(rng.integers(-500, 500, (4, 10, 12)).astype(np.int16), ".nii.gz",
                                                 compress=True)
    return {"photo.png": (_VALID_PNG["photo.png"], (20, 16)), "scan.nii.gz": (_VALID_PNG["scan.nii.gz"], (12, 10, 4))}


@st.composite
def boxes_case(draw) -> Hostile:
    """A valid image or volume with a hostile box file (JSON or CSV), found beside it or given with --boxes."""
    name = draw(st.sampled_from(["photo.png", "scan.nii.gz"]))
    data, size = _valid_inputs()[name]
    stem = name.split(".")[0]
    as_json = draw(st.booleans())
    boxes, note = draw(box_json(name, size, ["other.nii.gz"]) if as_json else box_csv(name, size, ["other.png"]))
    box_name = f"{stem}.boxes.{'json' if as_json else 'csv'}"
    files = {name: data, box_name: boxes}
    args = []
    how = draw(st.integers(0, 9))
    if how == 0:
        args = ["--boxes", box_name]
    elif how == 1:  # the box file named on the command line is another file (the image itself)
        args = ["--boxes", name]
    elif how == 2 and len(size) == 3:
        args = ["--box-space", "world"]
    return Hostile("boxes-json" if as_json else "boxes-csv", files, [name], args, note=note)


READERS["boxes"] = boxes_case
