"""dicom_guard: a DICOM element declaring more bytes than its file holds is refused before GDCM reads the folder
(GDCM allocates whatever a length says: 3.8 GB for the fuzzer's 924-byte file). Files are built here byte by byte
from PS3.5's encodings, independently of the guard's walker."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from repmedsam_ov.dicom_guard import check_dicom_lengths
from repmedsam_ov.errors import InputError
from repmedsam_ov.medical_io import kind_of, read_volume
from tests.fuzz.gen import dicom_slices

CORPUS = Path(__file__).parents[1] / "fuzz" / "corpus" / "dicom-meta-length-4gb-allocation" / "files"
IMPLICIT, EXPLICIT, DEFLATED = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"
LONG = {b"OB", b"OW", b"SQ", b"UN", b"UT"}
HUGE = 0x7FFF0000


def element(group, elem, vr, value, explicit=True, length=None):
    n = len(value) if length is None else length
    if not explicit:
        return struct.pack("<HHI", group, elem, n) + value
    if vr in LONG:
        return struct.pack("<HH2s2xI", group, elem, vr, n) + value
    return struct.pack("<HH2sH", group, elem, vr, n) + value


def item(body, length=None):
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body) if length is None else length) + body


ITEM_END = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
SEQUENCE_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def part10(dataset: bytes, syntax: str) -> bytes:
    uid = syntax.encode() + b"\0" * (len(syntax) % 2)
    meta = element(0x0002, 0x0010, b"UI", uid)
    return b"\0" * 128 + b"DICM" + element(0x0002, 0x0000, b"UL", struct.pack("<I", len(meta))) + meta + dataset


def write(tmp_path, data: bytes, name="x.dcm") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refusal(path: Path) -> str:
    with pytest.raises(InputError) as e:
        check_dicom_lengths(path)
    return str(e.value)


def test_the_fuzzers_file_is_refused_before_gdcm_reads_the_folder(tmp_path):
    series = tmp_path / "series"
    shutil.copytree(CORPUS / "series", series)
    message = refusal(series / "odd.dcm")
    assert message.startswith(f"{series / 'odd.dcm'}: broken DICOM file: element (0002,0001) at byte 144 declares "
                              "3,825,205,250 bytes, but only 768 follow.")
    assert kind_of(series) == "dicom"  # still taken as a case, so that the run reports it
    with pytest.raises(InputError, match=r"odd\.dcm: broken DICOM file: element \(0002,0001\)"):
        read_volume(series)


def test_files_written_by_simpleitk_pass_and_read(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for k, data in enumerate(dicom_slices(np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5))):
        check_dicom_lengths(write(folder, data, f"s{k}.dcm"))
    assert read_volume(folder).array.shape == (3, 4, 5)


def test_pixel_data_longer_than_the_file_is_refused(tmp_path):
    data = bytearray(dicom_slices(np.zeros((1, 4, 5), np.int16))[0])
    at = data.rindex(b"\xe0\x7f\x10\x00")  # SimpleITK writes implicit VR little endian
    struct.pack_into("<I", data, at + 4, HUGE)
    assert f"element (7FE0,0010) at byte {at} declares 2,147,418,112 bytes" in refusal(write(tmp_path, bytes(data)))


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit", "implicit"])
def test_an_element_inside_an_undefined_length_sequence_is_checked(tmp_path, explicit):
    inner = element(0x0040, 0xA160, b"UT", b"text", explicit, length=HUGE)
    sequence = element(0x0008, 0x1140, b"SQ", item(inner, 0xFFFFFFFF) + ITEM_END + SEQUENCE_END, explicit,
                       length=0xFFFFFFFF)
    path = write(tmp_path, part10(sequence, EXPLICIT if explicit else IMPLICIT))
    assert "element (0040,A160)" in refusal(path)


def test_an_element_inside_a_defined_length_sequence_is_checked(tmp_path):
    inner = element(0x0040, 0xA160, b"UT", b"text", length=HUGE)
    path = write(tmp_path, part10(element(0x0008, 0x1140, b"SQ", item(inner)), EXPLICIT))
    assert "element (0040,A160)" in refusal(path)


def test_an_item_longer_than_the_file_is_refused(tmp_path):
    path = write(tmp_path, part10(element(0x0008, 0x1140, b"SQ", item(b"", HUGE), length=0xFFFFFFFF), EXPLICIT))
    assert "element (FFFE,E000)" in refusal(path)


def test_pixel_data_fragments_are_raw_bytes_not_elements(tmp_path):
    lookalike = element(0x0008, 0x0005, b"OB", b"", length=HUGE)  # compressed bytes that parse as a huge element
    encapsulated = element(0x7FE0, 0x0010, b"OB", item(b"") + item(lookalike) + SEQUENCE_END, length=0xFFFFFFFF)
    check_dicom_lengths(write(tmp_path, part10(encapsulated, EXPLICIT), "fragments.dcm"))
    assert "element (0008,0005)" in refusal(write(tmp_path, part10(lookalike, EXPLICIT), "element.dcm"))


def test_a_deflated_data_set_is_checked_inflated(tmp_path):
    body = element(0x0010, 0x0010, b"PN", b"ANON") + element(0x0008, 0x0005, b"OB", b"", length=HUGE)
    deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    message = refusal(write(tmp_path, part10(deflate.compress(body) + deflate.flush(), DEFLATED)))
    assert "element (0008,0005) (in its deflated data set)" in message


def test_files_without_the_part10_preamble_are_left_to_the_reader(tmp_path):
    check_dicom_lengths(write(tmp_path, element(0x0008, 0x0005, b"OB", b"", length=HUGE)[:12] + b"x" * 200))
    check_dicom_lengths(write(tmp_path, b"", "empty.dcm"))


def test_an_unknown_value_representation_in_the_meta_group_is_refused(tmp_path):
    """GDCM read 'S/' (a flipped 'SH') as part of a big-endian length and allocated 1.4 GB per scan."""
    data = bytearray(dicom_slices(np.zeros((1, 4, 5), np.int16))[0])
    at = data.index(b"\x02\x00\x13\x00SH")  # Implementation Version Name
    data[at + 5] = ord("/")
    assert f"element (0002,0013) at byte {at} has value representation b'S/'" in refusal(write(tmp_path, bytes(data)))

