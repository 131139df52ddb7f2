"""Medical image files: NIfTI (.nii, .nii.gz), NRRD (.nrrd), MetaImage (.mha, .mhd), DICOM series folders and
2D images (PNG, JPEG, TIFF) in; label maps out in the input's exact geometry, written atomically.

Volumes are read with SimpleITK (one reader for every format, DICOM series included, with the geometry in
ITK's LPS world frame). Arrays are (k, j, i) — numpy's view of index (i, j, k) = (x, y, z). Label maps are
written so that size, spacing, origin and direction read back bit for bit: a NIfTI-1 or NRRD input's header
is copied with only the data type changed (SimpleITK's NRRD writer rounds spacing and direction, and no
writer can know a NIfTI's qform/sform codes); other outputs get the geometry SimpleITK read, through its
MetaImage writer (exact doubles) or NIfTI writer (float32). Files are checked to be complete before
reading: SimpleITK fills a truncated .nii.gz with zeros without a word. Imports numpy, OpenCV, SimpleITK
(lazily); never torch.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import struct
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path, write_bytes_atomic
from .dicom_guard import check_dicom_lengths
from .errors import InputError
from .limits import check_values

__all__ = ["Geometry", "Volume", "VOLUME_EXTS", "IMAGE_EXTS", "is_dicom_folder", "kind_of", "read_image_2d",
           "read_volume", "split_ext", "write_labels_2d", "write_labels_3d"]

VOLUME_EXTS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_NIFTI_TYPES = {np.dtype(np.uint8): (2, 8), np.dtype(np.uint16): (512, 16)}
_MET_SIZES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4, "MET_INT": 4,
              "MET_ULONG": 8, "MET_LONG": 8, "MET_ULONG_LONG": 8, "MET_LONG_LONG": 8, "MET_FLOAT": 4,
              "MET_DOUBLE": 8}
_NRRD_SIZES = {1: ("uchar", "uint8", "signed char", "int8", "char", "unsigned char", "uint8_t", "int8_t"),
               2: ("short", "ushort", "uint16", "int16", "short int", "unsigned short", "signed short", "uint16_t",
                   "int16_t", "unsigned short int", "signed short int"),
               4: ("int", "uint", "uint32", "int32", "float", "unsigned int", "signed int", "uint32_t", "int32_t"),
               8: ("double", "longlong", "ulonglong", "int64", "uint64", "long long", "unsigned long long",
                   "int64_t", "uint64_t")}
# NRRD fields that describe the grid: copied to a label map; everything else (type, encoding, keys) is not
_NRRD_GEOMETRY = ("dimension", "space", "space dimension", "sizes", "space directions", "space origin",
                  "space units", "kinds", "spacings", "thicknesses", "axis mins", "axismins", "axis maxs",
                  "axismaxs", "centers", "centerings", "units", "labels", "measurement frame")


def split_ext(path: Path) -> tuple[str, str]:
    """('scan', '.nii.gz') for scan.nii.gz: the stem and the (lower-case) extension, double ones included."""
    name = path.name
    for ext in VOLUME_EXTS + IMAGE_EXTS + (".npz",):
        if name.lower().endswith(ext):
            return name[: -len(ext)], ext
    return path.stem, path.suffix.lower()


def kind_of(path: Path) -> str | None:
    """'npz', 'volume', 'image', 'dicom' (a folder holding a DICOM series) or None (not a supported input)."""
    if path.is_dir():
        return "dicom" if is_dicom_folder(path) else None
    ext = split_ext(path)[1]
    return "npz" if ext == ".npz" else "volume" if ext in VOLUME_EXTS else "image" if ext in IMAGE_EXTS else None


_mute_lock = threading.Lock()
_mute = {"depth": 0, "saved": -1}


@contextmanager
def _native_stderr_muted():
    """Silence what C++ libraries print straight to file descriptor 2 while they read a file (ITK's MetaIO and
    GDCM, libpng/libtiff through OpenCV write lines such as "MetaImage: Read: Cannot parse file" that no
    switch turns off), so a failure stays one line: its exception carries the reason. Nested and concurrent
    readers share one redirection; with -v (debug logging) nothing is muted. The CLI writes its own lines
    through a duplicate of descriptor 2 (cli.py), so they are never muted."""
    if logging.getLogger("repmedsam_ov").isEnabledFor(logging.DEBUG):
        yield
        return
    with _mute_lock:
        if _mute["depth"] == 0:
            try:
                saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
            except OSError:
                saved = devnull = -1
            if saved >= 0:
                os.dup2(devnull, 2)
                os.close(devnull)
            _mute["saved"] = saved
        _mute["depth"] += 1
    try:
        yield
    finally:
        with _mute_lock:
            _mute["depth"] -= 1
            if _mute["depth"] == 0 and _mute["saved"] >= 0:
                os.dup2(_mute["saved"], 2)
                os.close(_mute["saved"])
                _mute["saved"] = -1


def _sitk():
    """SimpleITK, with ITK's own warnings (printed straight to stderr) silenced: our errors say what matters."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    return sitk


def is_dicom_folder(path: Path) -> bool:
    """Whether the folder holds DICOM files (Part 10: 'DICM' at byte 128) that GDCM groups into a series."""
    def is_dicom(file: Path) -> bool:
        try:
            with open(file, "rb") as f:
                return f.read(132)[128:] == b"DICM"
        except OSError:
            return False

    parts = [p for p in path.iterdir() if p.is_file() and is_dicom(p)]
    if not parts:
        return False
    try:
        for part in parts:
            check_dicom_lengths(part)
    except (InputError, OSError):
        return True  # a DICOM folder with a broken file: reading it says which
    with _native_stderr_muted():
        return bool(_sitk().ImageSeriesReader.GetGDCMSeriesIDs(str(path)))


@dataclass(frozen=True)
class Geometry:
    """A volume's grid as SimpleITK reads it: size (i, j, k) voxels, spacing (mm), origin (LPS mm) and direction
    (row-major 3x3, column a = world direction of index axis a)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image) -> "Geometry":
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   tuple(image.GetDirection()))

    def world_to_index(self, points: np.ndarray) -> np.ndarray:
        """points: (..., 3) LPS millimetres -> (..., 3) continuous (i, j, k) indices (voxel centres are whole)."""
        matrix = np.asarray(self.direction, np.float64).reshape(3, 3) * np.asarray(self.spacing, np.float64)
        return (np.asarray(points, np.float64) - np.asarray(self.origin)) @ np.linalg.inv(matrix).T

    def world_boxes_to_index(self, boxes: np.ndarray) -> np.ndarray:
        """boxes: (N, 6) `[x_min, y_min, z_min, x_max, y_max, z_max]` in LPS millimetres -> (N, 6) int64 voxel
        indices (i, j, k) of the box's corners' nearest voxels (oblique grids: the extent of all 8 corners).
        A corner up to half a voxel outside the grid rounds to its edge voxel."""
        boxes = np.asarray(boxes, np.float64)
        corners = np.stack([boxes[:, [a if (c >> a) & 1 == 0 else a + 3 for a in range(3)]] for c in range(8)], 1)
        index = self.world_to_index(corners)  # (N, 8, 3)
        return np.floor(np.concatenate([index.min(axis=1), index.max(axis=1)], axis=1) + 0.5).astype(np.int64)


@dataclass(frozen=True)
class Volume:
    """array: (k, j, i) as stored (any real dtype); modality: DICOM Modality (e.g. 'CT') or None."""

    path: Path
    array: np.ndarray
    geometry: Geometry
    modality: str | None = None


def _sitk_error(path: Path, what: str, e: Exception) -> InputError:
    first = [line for line in str(e).splitlines() if line.strip() and "ITK ERROR" not in line and ".hxx" not in line]
    detail = first[-1].strip() if first else str(e).splitlines()[-1]
    return InputError(f"{path}: cannot read as {what} ({detail}).")


def read_volume(path: Path, max_voxels: int | None = None) -> Volume:
    """A 3D scalar volume from a NIfTI/NRRD/MetaImage file or a DICOM series folder. Raises InputError.

    A file declaring more values (voxels x components) than `max_voxels` (default `limits.max_voxels()`) is
    refused from its header, before its data are read or decompressed."""
    with _native_stderr_muted():
        return _read_volume(path, max_voxels)


def _read_volume(path: Path, max_voxels: int | None) -> Volume:
    sitk = _sitk()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder.")
    modality = None
    if path.is_dir():
        image, modality = _read_dicom_series(path, max_voxels)
        what = "a DICOM series"
    else:
        what = {".nrrd": "NRRD", ".mha": "MetaImage", ".mhd": "MetaImage"}.get(split_ext(path)[1], "NIfTI")
        _check_complete(path, what, max_voxels)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
            check_values(str(path), (*reader.GetSize(), reader.GetNumberOfComponents()), max_voxels)
            image = reader.Execute()
        except RuntimeError as e:
            raise _sitk_error(path, what, e) from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per voxel, expected a "
                         "scalar (grey) volume.")
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:  # NIfTI dim[0] = 4 with one time point
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise InputError(f"{path}: is {image.GetDimension()}D with size {image.GetSize()}, expected a 3D volume "
                         "(a 2D image goes in as PNG/JPEG/TIFF).")
    array = sitk.GetArrayFromImage(image)
    if array.dtype.kind not in "iuf":
        raise InputError(f"{path}: voxels of type {array.dtype}, expected integer or real intensities.")
    return Volume(path, array, Geometry.of(image), modality)


def _read_dicom_series(path: Path, max_voxels: int | None):
    sitk = _sitk()
    for part in sorted(path.iterdir()):  # before GDCM scans them: it allocates whatever length a file declares
        if part.is_file():
            check_dicom_lengths(part)
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
    if not ids:
        raise InputError(f"{path}: no DICOM series found in this folder.")
    if len(ids) > 1:
        raise InputError(f"{path}: holds {len(ids)} DICOM series ({', '.join(ids)}); put each series in its own folder.")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), ids[0])
    sizes, positions, modality = {}, [], None
    info = sitk.ImageFileReader()
    for name in files:
        info.SetFileName(name)
        try:
            info.ReadImageInformation()
        except RuntimeError as e:
            raise _sitk_error(Path(name), "DICOM", e) from None
        sizes.setdefault(tuple(info.GetSize()[:2]), []).append(Path(name).name)
        if modality is None and info.HasMetaDataKey("0008|0060"):
            modality = info.GetMetaData("0008|0060").strip().upper() or None
        if info.HasMetaDataKey("0020|0032"):
            positions.append(_dicom_position(Path(name), info.GetMetaData("0020|0032")))
    if len(sizes) > 1:
        found = "; ".join(f"{w}x{h} in {len(n)} files (e.g. {n[0]})" for (w, h), n in sizes.items())
        raise InputError(f"{path}: DICOM series with mixed slice sizes ({found}); every slice must have the same "
                         "size. Remove the odd files or split the series.")
    if len(positions) == len(files) > 2:
        steps = np.linalg.norm(np.diff(np.asarray(positions), axis=0), axis=1)
        if steps.min() <= 0 or steps.max() > 1.01 * steps.min():
            raise InputError(f"{path}: DICOM slices are unevenly spaced (gaps {steps.min():.3g} to {steps.max():.3g} "
                             "mm, or repeated positions): slices are missing or two series are mixed.")
    (w, h), = sizes
    check_values(str(path), (w, h, len(files), info.GetNumberOfComponents()), max_voxels)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute(), modality
    except RuntimeError as e:
        raise _sitk_error(path, "a DICOM series", e) from None


def _dicom_position(path: Path, text: str) -> list[float]:
    """Image Position (Patient): three finite numbers in mm, or InputError naming the file."""
    try:
        values = [float(v) for v in text.split("\\")]
    except ValueError:
        values = []
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise InputError(f"{path}: DICOM Image Position (Patient) (0020,0032) is {text.strip()!r}, expected three "
                         "numbers in mm separated by backslashes.")
    return values


def _check_complete(path: Path, what: str, max_voxels: int | None = None) -> None:
    """InputError when the file ends before its voxel data does (truncated download or copy), or when its
    header declares more values than the limit (checked first: a gzip bomb is never inflated)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if what == "NIfTI":
            expected, offset, gz, shape = _nifti_extent(path, head)
        elif what == "NRRD":
            expected, offset, gz, shape = _nrrd_extent(path)
        else:
            expected, offset, gz, shape = _meta_extent(path)
    except (OSError, EOFError, ValueError, KeyError, struct.error, zlib.error) as e:
        raise InputError(f"{path}: not a readable {what} file ({type(e).__name__}: {e}).") from None
    if shape is not None:
        check_values(str(path), shape, max_voxels)
    if expected is None:
        return
    try:
        got = _stream_length(path, offset, gz)
    except zlib.error as e:  # a corrupt compressed stream: SimpleITK would report only "Uncompress failed"
        raise InputError(f"{path}: corrupt {what} file: its compressed voxel data cannot be inflated ({e}); copy "
                         "or download it again.") from None
    if got is None or got < expected:
        raise InputError(f"{path}: truncated {what} file: the voxel data end early (the file is cut short; "
                         "copy or download it again).")


# NIfTI-1 datatype codes of one value per voxel: uint8, int16, int32, float32, float64, int8, uint16, uint32, int64,
# uint64. Colour, complex and binary codes hold other than one number per voxel; we segment grey volumes only.
_NIFTI_SCALAR_TYPES = {2, 4, 8, 16, 64, 256, 512, 768, 1024, 1280}
_NIFTI_OTHER_TYPES = {1: "binary", 32: "complex64", 128: "RGB24", 1536: "float128", 1792: "complex128",
                      2048: "complex256", 2304: "RGBA32"}


def _nifti_extent(path: Path, head: bytes):
    gz = head[:2] == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        header = f.read(352)
    if len(header) < 348:
        raise ValueError(f"{len(header)} bytes, shorter than a NIfTI header")
    for endian in "<>":
        if struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = struct.unpack(endian + "f", header[108:112])[0]
            if not 0 <= offset < 2**31:  # NaN and inf included: int(inf) would raise OverflowError
                raise ValueError(f"vox_offset {offset} is not a byte offset")
            geometry = struct.unpack(endian + "4f", header[76:92]) + struct.unpack(endian + "18f", header[256:328])
            if not all(np.isfinite(geometry)):
                # checked before SimpleITK sees the file: ITK's NIfTI reader loops forever on an inf or NaN in the
                # sform/qform (pixdim[0..3], quatern_b..qoffset_z, srow_x..srow_z)
                raise ValueError("NaN or infinite values in its geometry (pixdim, qform or sform fields)")
            datatype = struct.unpack(endian + "h", header[70:72])[0]
            if datatype not in _NIFTI_SCALAR_TYPES:
                # checked before SimpleITK sees the file: ITK's NIfTI reader corrupts the heap (malloc(): unaligned
                # tcache chunk, abort) on an RGB24 datatype whose bitpix and dims disagree with it
                raise ValueError(f"datatype {datatype} ({_NIFTI_OTHER_TYPES.get(datatype, 'unknown')}), expected a "
                                 "scalar (grey) volume: an integer or float datatype")
            if 5 <= dims[0] <= 7 and any(d > 1 for d in dims[5:dims[0] + 1]):
                # checked before SimpleITK sees the file: ITK 5's NIfTI reader corrupts the heap (free(): invalid
                # pointer, or a segfault) on an integer vector image with scl_slope != 1
                raise ValueError(f"{int(np.prod([max(d, 1) for d in dims[5:dims[0] + 1]]))} values per voxel "
                                 f"(dim[5..7] = {list(dims[5:dims[0] + 1])}), expected a scalar (grey) volume")
            shape = [max(d, 1) for d in dims[1:dims[0] + 1]]
            count = int(np.prod(shape, dtype=object))
            return int(offset) + count * bitpix // 8, 0, gz, shape
    if 540 not in (struct.unpack("<i", header[:4])[0], struct.unpack(">i", header[:4])[0]):
        raise ValueError("no NIfTI header (its first 4 bytes are not 348 or 540)")
    return None, 0, gz, None  # NIfTI-2: SimpleITK reads it (its size is checked from SimpleITK's header)


def _header_lines(path: Path, stop) -> tuple[list[str], int]:
    lines, size = [], 0
    with open(path, "rb") as f:
        for raw in f:
            size += len(raw)
            line = raw.decode("latin-1").rstrip("\r\n")
            if stop(line):
                lines.append(line)
                return lines, size
            lines.append(line)
            if size > 1 << 20:
                break
    raise ValueError("no end of header found")


def _nrrd_extent(path: Path):
    lines, size = _header_lines(path, lambda line: line == "")
    fields = dict((k.strip().lower(), v.strip()) for k, v in (l.split(":", 1) for l in lines[1:] if ": " in l and ":=" not in l))
    shape = [int(v) for v in fields["sizes"].split()]
    if "data file" in fields or "datafile" in fields:
        return None, 0, False, shape
    kind = fields["type"].lower()
    bytes_per = next((n for n, names in _NRRD_SIZES.items() if kind in names), None)
    encoding = fields.get("encoding", "raw").lower()
    if bytes_per is None or encoding not in ("raw", "gzip", "gz"):
        return None, 0, False, shape
    count = int(np.prod(shape, dtype=object))
    return count * bytes_per, size, encoding != "raw", shape


def _meta_extent(path: Path):
    lines, size = _header_lines(path, lambda line: line.replace(" ", "").startswith("ElementDataFile="))
    fields = dict((k.strip(), v.strip()) for k, v in (l.split("=", 1) for l in lines if "=" in l))
    shape = None
    if "DimSize" in fields:
        shape = [int(v) for v in fields["DimSize"].split()] + [int(fields.get("ElementNumberOfChannels", 1))]
    data_file = fields.get("ElementDataFile", "")
    if data_file.upper().startswith("LIST") or "%" in data_file:  # MetaIO tests the first 4 characters only
        # checked before SimpleITK sees the file: ITK's MetaImage reader takes whatever follows LIST as slice file
        # names (binary data included) and corrupts the heap on some (double free, abort), reads a list of too few
        # files without a word, and divides by zero (SIGFPE) on a file name pattern with step 0
        raise ValueError(f"ElementDataFile = {data_file[:40]!r} (voxel data spread over a list of slice files) is not "
                         "supported; save the volume as one .mha, .nrrd or .nii.gz file")
    if data_file != "LOCAL" or fields.get("ElementType") not in _MET_SIZES or shape is None:
        return None, 0, False, shape
    count = int(np.prod(shape, dtype=object))
    compressed = fields.get("CompressedData", "False").lower() == "true"
    return count * _MET_SIZES[fields["ElementType"]], size, compressed, shape


def _stream_length(path: Path, offset: int, compressed: bool) -> int | None:
    """Bytes after `offset` (decompressed when compressed); None when the compressed stream is cut short."""
    if not compressed:
        return path.stat().st_size - offset
    total, inflate = 0, zlib.decompressobj(47)  # 47: zlib or gzip header, detected
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(1 << 20):
            total += len(inflate.decompress(chunk))
            while inflate.eof and inflate.unused_data:  # concatenated gzip members
                rest, inflate = inflate.unused_data, zlib.decompressobj(47)
                total += len(inflate.decompress(rest))
    return total if inflate.eof else None


def read_image_2d(path: Path, max_voxels: int | None = None) -> np.ndarray:
    """A 2D image as stored: (H, W, 3) RGB or (H, W) grey, any integer or float dtype. Raises InputError.

    A PNG, JPEG or TIFF whose header declares more values (pixels x channels) than `max_voxels` (default
    `limits.max_voxels()`) is refused before it is decoded."""
    import cv2

    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    data = np.fromfile(path, np.uint8)
    declared = _declared_image_shape(data[:1 << 16].tobytes())
    if declared is not None:
        check_values(str(path), declared, max_voxels, "values")
    _check_png_chunks(path, data)
    with _native_stderr_muted():
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError(f"{path}: cannot decode as an image (truncated or not a PNG/JPEG/TIFF file).")
    if image.ndim == 3:
        if image.shape[2] == 1:
            image = image[:, :, 0]
        elif image.shape[2] in (3, 4):
            image = np.ascontiguousarray(image[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped
        else:
            raise InputError(f"{path}: {image.shape[2]} channels, expected grey, RGB or RGBA.")
    if 0 in image.shape:
        raise InputError(f"{path}: empty image (shape {image.shape}).")
    check_values(str(path), image.shape, max_voxels, "values")  # formats whose header was not parsed
    return image


# deflate's best case: one 258-byte match per 2 bits, so IDAT chunks never inflate to more than 1032 times their size
_DEFLATE_MAX_RATIO = 1032
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # IHDR colour type -> values per pixel (grey, RGB, palette, grey+A, RGBA)


def _check_png_chunks(path: Path, data: np.ndarray) -> None:
    """InputError for a PNG whose chunk lengths run past the end of the file, or whose IHDR declares more pixel
    data than its IDAT chunks can inflate to: OpenCV allocates what either declares (gigabytes, seconds for a
    file of a few hundred bytes) before it finds the data missing."""
    buf = memoryview(data)
    if bytes(buf[:8]) != _PNG_SIGNATURE:
        return
    at, idat, raw, size = 8, 0, None, len(data)
    while at + 8 <= size:
        length, kind = struct.unpack_from(">I4s", buf, at)
        name = kind.decode("latin-1")
        if at + 12 + length > size:
            raise InputError(f"{path}: truncated or corrupt PNG: its {name!r} chunk at byte {at} declares "
                             f"{length:,} bytes, but only {max(size - at - 12, 0):,} follow.")
        if kind == b"IHDR" and length >= 13:
            width, height, depth, colour = struct.unpack_from(">IIBB", buf, at + 8)
            samples = _PNG_SAMPLES.get(colour, 1)
            raw = height * (1 + (width * samples * depth + 7) // 8)  # a filter byte per row; interlacing adds more
        elif kind == b"IDAT":
            idat += length
        elif kind == b"IEND":
            break
        at += 12 + length
    if raw is not None and raw > idat * _DEFLATE_MAX_RATIO:
        raise InputError(f"{path}: truncated or corrupt PNG: its header declares {width}x{height} pixels ({raw:,} "
                         f"bytes of pixel data), more than its {idat:,} bytes of compressed data can hold.")


def _declared_image_shape(head: bytes) -> tuple[int, int, int] | None:
    """(width, height, channels) from a PNG IHDR, a JPEG SOF or a TIFF's first IFD; None when not found."""
    try:
        if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return width, height, _PNG_SAMPLES.get(head[25], 4)
        if head[:2] == b"\xff\xd8":
            at = 2
            while at + 9 < len(head) and head[at] == 0xFF:
                marker, length = head[at + 1], struct.unpack(">H", head[at + 2:at + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    height, width = struct.unpack(">HH", head[at + 5:at + 9])
                    return width, height, head[at + 9]
                at += 2 + length
            return None
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            e = "<" if head[:2] == b"II" else ">"
            ifd = struct.unpack(e + "I", head[4:8])[0]
            count = struct.unpack(e + "H", head[ifd:ifd + 2])[0]
            tags = {}
            for i in range(count):
                tag, kind, _, value = struct.unpack(e + "HHI4s", head[ifd + 2 + 12 * i:ifd + 14 + 12 * i])
                if kind in (3, 4):
                    tags[tag] = struct.unpack(e + ("H" if kind == 3 else "I"), value[:2 if kind == 3 else 4])[0]
            if 256 in tags and 257 in tags:
                return tags[256], tags[257], tags.get(277, 1)
    except (struct.error, IndexError):  # a header cut short: the decoder reports it
        return None
    return None


def write_labels_2d(path: Path, labels: np.ndarray) -> None:
    """labels: (H, W) uint8/uint16 -> a PNG or TIFF label image (lossless), written atomically."""
    import cv2

    ok, data = cv2.imencode(split_ext(path)[1], labels)
    if not ok:
        raise InputError(f"{path}: cannot encode the label map in this format (use .png or .tif).")
    write_bytes_atomic(path, data.tobytes())


def write_labels_3d(path: Path, labels: np.ndarray, like: Volume) -> None:
    """labels: (k, j, i) uint8/uint16 in the file order of `like` -> a label volume in its exact geometry."""
    if labels.shape != like.array.shape:
        raise ValueError(f"labels {labels.shape} do not match the volume {like.array.shape}")
    in_ext, out_ext = split_ext(like.path)[1], split_ext(path)[1]
    data = None
    if out_ext in (".nii", ".nii.gz") and in_ext in (".nii", ".nii.gz"):
        data = _nifti_like(like.path, labels)
    elif out_ext == ".nrrd" and in_ext == ".nrrd":
        data = _nrrd_like(like.path, labels)
    if data is not None:
        write_bytes_atomic(path, gzip.compress(data, 1, mtime=0) if out_ext == ".nii.gz" else data)
        return
    if out_ext not in (".nii", ".nii.gz", ".nrrd", ".mha"):  # .mhd: header and data in two files, not atomic
        raise InputError(f"{path}: cannot write a label volume as {out_ext or 'this'}; use .nii.gz, .nii, .nrrd or .mha.")
    sitk = _sitk()

    image = sitk.GetImageFromArray(labels)
    g = like.geometry
    image.SetSpacing(g.spacing)
    image.SetOrigin(g.origin)
    image.SetDirection(g.direction)
    with atomic_path(path, suffix=out_ext) as tmp:  # SimpleITK picks the format by extension
        sitk.WriteImage(image, str(tmp), True)


def _nifti_like(source: Path, labels: np.ndarray) -> bytes | None:
    """The source's NIfTI-1 header (all geometry fields byte for byte) with the label data type; None for
    NIfTI-2 or an unusual header (then SimpleITK writes the file)."""
    with open(source, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with (gzip.open(source, "rb") if gz else open(source, "rb")) as f:
        header = bytearray(f.read(348))
    endian = next((e for e in "<>" if struct.unpack(e + "i", header[:4])[0] == 348), None)
    if endian is None or header[344:348] != b"n+1\x00":
        return None
    dims = struct.unpack(endian + "8h", header[40:56])
    if int(np.prod([max(d, 1) for d in dims[1:dims[0] + 1]])) != labels.size:
        return None
    code, bitpix = _NIFTI_TYPES[labels.dtype]
    struct.pack_into(endian + "3f", header, 56, 0, 0, 0)        # intent_p1..3
    struct.pack_into(endian + "3h", header, 68, 0, code, bitpix)  # intent_code, datatype, bitpix
    struct.pack_into(endian + "3f", header, 108, 352, 1, 0)     # vox_offset, scl_slope, scl_inter
    struct.pack_into(endian + "2f", header, 124, 0, 0)          # cal_max, cal_min
    header[148:228] = b"repmedsam-ov labels".ljust(80, b"\x00")  # descrip
    header[228:252] = bytes(24)                                 # aux_file
    return bytes(header) + bytes(4) + labels.astype(labels.dtype.newbyteorder(endian)).tobytes()


def _nrrd_like(source: Path, labels: np.ndarray) -> bytes:
    """A NRRD whose geometry fields are the source's lines, verbatim, with the label data (gzip)."""
    lines, _ = _header_lines(source, lambda line: line == "")
    kept = [l for l in lines[1:] if ": " in l and ":=" not in l and l.split(":", 1)[0].strip().lower() in _NRRD_GEOMETRY]
    kind = "uint8" if labels.dtype == np.uint8 else "uint16"
    header = ["NRRD0004", "# labels written by repmedsam-ov in the geometry of " + source.name, f"type: {kind}",
              *kept, "encoding: gzip", "endian: little", "", ""]
    return "\n".join(header).encode("latin-1") + gzip.compress(labels.astype(labels.dtype.newbyteorder("<")).tobytes(),
                                                               1, mtime=0)
