"""Refuse a DICOM file whose data elements declare more bytes than the file holds, before GDCM reads it.

GDCM (under SimpleITK's series scan and reader) allocates and zero-fills each element's declared value length
before it reads the value: one flipped length byte in a 900-byte file made it take 3.8 GB per scan and the
process was killed for memory (found by benchmarks/fuzz.py). A genuine file never declares more than it
holds, so walking the element headers and comparing each length with the bytes left is a complete guard;
nested sequence items are walked too, and encapsulated pixel-data fragments are skipped whole. The file meta
group (always explicit VR little endian) must also have known value representations: on an unknown one GDCM
guesses another encoding and takes the VR and length bytes for a big-endian length (1.4 GB from a flipped
'SH'). In the data set, structure the walk cannot follow (implicit VR inside a UN value, a writer's slip) is left
to GDCM, which reports it.
Standard library only.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from pathlib import Path

from .errors import InputError

__all__ = ["check_dicom_lengths"]

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
# explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2); all others have a 2-byte length
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
VRS = LONG_VRS | {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH",
                  b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
IMPLICIT_LE, EXPLICIT_BE, DEFLATED = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"
_PREAMBLE = 132  # 128 bytes + "DICM"
_MAX_HEADER_BYTES = 64 << 20  # deflated datasets are inflated at most this far (pixel data lies beyond)


def check_dicom_lengths(path: Path) -> None:
    """InputError when a Part 10 file (preamble and "DICM") declares an element longer than what follows it."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < _PREAMBLE:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:  # pages of pixel data are never read
            if data[128:_PREAMBLE] == b"DICM":
                _check_file(path, data)


def _check_file(path: Path, data) -> None:
    meta_end, syntax = _walk_meta(path, data)
    if syntax == DEFLATED:
        try:
            data, meta_end = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[meta_end:], _MAX_HEADER_BYTES), 0
        except zlib.error:
            return  # GDCM refuses the stream itself
    _walk(path, data, meta_end, explicit=syntax != IMPLICIT_LE, little=syntax != EXPLICIT_BE,
          in_file=syntax != DEFLATED)


def _walk_meta(path: Path, data: bytes) -> tuple[int, str]:
    """End offset of the file meta group (0002,xxxx; always explicit little endian) and its transfer syntax."""
    at, syntax = _PREAMBLE, IMPLICIT_LE
    while at + 8 <= len(data) and struct.unpack_from("<H", data, at)[0] == 0x0002:
        tag = struct.unpack_from("<HH", data, at)
        header, length = _explicit_header(path, data, at, "<", at)
        _check(path, length, len(data) - at - header, at, tag)
        if tag == (0x0002, 0x0010):
            syntax = data[at + header:at + header + length].rstrip(b"\0 ").decode("ascii", "replace")
        at += header + length
    return at, syntax


def _walk(path: Path, data, at: int, explicit: bool, little: bool, in_file: bool) -> None:
    """Every element and item header of the data set in `data` from `at` (`in_file`: offsets are the file's)."""
    order = "<" if little else ">"
    contexts = []  # one per open undefined-length element: True where its items are pixel-data fragments
    while at + 8 <= len(data):
        group, element = struct.unpack_from(order + "HH", data, at)
        tag = (group << 16) | element
        if group == 0xFFFE:  # item or delimiter: tag and a 4-byte length, no VR
            length = struct.unpack_from(order + "I", data, at + 4)[0]
            if tag == SEQUENCE_END:
                contexts = contexts[:-1]
            elif tag == ITEM and length != UNDEFINED:
                _check(path, length, len(data) - at - 8, at if in_file else None, (group, element))
                if contexts and contexts[-1]:
                    at += length  # a fragment of encapsulated pixel data: raw bytes, not elements
            at += 8
            continue
        if explicit and data[at + 4:at + 6] not in VRS:
            return  # implicit VR inside a UN value, or a writer's slip that readers tolerate: not walked further
        if explicit:
            header, length = _explicit_header(path, data, at, order, at if in_file else None)
        else:
            header, length = 8, struct.unpack_from(order + "I", data, at + 4)[0]
        if length == UNDEFINED:  # a sequence, or encapsulated pixel data (its items are fragments)
            contexts.append(tag == 0x7FE00010)
            at += header
            continue
        _check(path, length, len(data) - at - header, at if in_file else None, (group, element))
        value = data[at + header:at + header + 4]
        nested = explicit and data[at + 4:at + 6] == b"SQ" or value == struct.pack(order + "HH", 0xFFFE, 0xE000)
        at += header if nested else header + length  # a defined-length sequence: walk its items


def _explicit_header(path: Path, data, at: int, order: str, offset: int | None) -> tuple[int, int]:
    """(header bytes, value length) of an explicit-VR element; an unknown VR is refused: GDCM then guesses
    another encoding and reads the VR and length bytes as a big-endian length (1.4 GB from 'S/')."""
    vr = data[at + 4:at + 6]
    if vr not in VRS:
        tag = struct.unpack_from(order + "HH", data, at)
        raise InputError(f"{path}: broken DICOM file: element ({tag[0]:04X},{tag[1]:04X}){_where(offset)} has value "
                         f"representation {vr!r}, not one of DICOM's.")
    if vr in LONG_VRS:
        return 12, struct.unpack_from(order + "I", data, at + 8)[0] if at + 12 <= len(data) else 0
    return 8, struct.unpack_from(order + "H", data, at + 6)[0]


def _check(path: Path, length: int, left: int, offset: int | None, tag: tuple[int, int]) -> None:
    if length > max(left, 0):
        raise InputError(f"{path}: broken DICOM file: element ({tag[0]:04X},{tag[1]:04X}){_where(offset)} declares "
                         f"{length:,} bytes, but only {max(left, 0):,} follow.")


def _where(offset: int | None) -> str:
    return f" at byte {offset}" if offset is not None else " (in its deflated data set)"
