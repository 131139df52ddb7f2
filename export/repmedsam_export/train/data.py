"""Training data: an index of images that hold objects, read from the training folder or a compact cache.

An *item* is one 2D image or one slice of a 3D volume that contains at least one labelled object. A source
returns the item's image (uint8, H×W×3 RGB or H×W grey, longest side 256 as stored) and its label map
(uint16 H×W, 0 = background, 1..N objects). The training folder layout is `../shared/data/README.md`'s:
`manifest.csv`, 2D `<name>.jpg|.png` + `<name>.gt.png`, 3D `<name>.npz` (imgs, gts, spacing).

The compact cache is one uncompressed .npz of uint8 and int arrays (no pickles): `blob` holds each item's
image and labels as encoded files (the original JPEG/PNG bytes for 2D, lossless PNG for 3D slices), so
the whole training set fits in tens of MB and a read costs one image decode.
Imports numpy, OpenCV and csv only (no torch).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from repmedsam_ov.atomic import atomic_path
from repmedsam_ov.errors import InputError, UsageError

__all__ = ["Item", "FolderSource", "CacheSource", "open_source", "build_cache", "select_subset",
           "CACHE_FORMAT_VERSION"]

CACHE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Item:
    """One trainable image: `name` of the case, `source` dataset tag, `z` slice index (-1 for 2D)."""

    name: str
    source: str
    z: int = -1

    @property
    def key(self) -> str:
        """Stable identifier, also used to match stored teacher embeddings."""
        return self.name if self.z < 0 else f"{self.name}@{self.z}"


def _decode(data: np.ndarray | bytes, what: str, rgb: bool) -> np.ndarray:
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{what}: cannot decode the image bytes.")
    if rgb and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


class FolderSource:
    """Reads items straight from the training folder (`manifest.csv` beside the images)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        manifest = self.root / "manifest.csv"
        if not manifest.is_file():
            raise InputError(f"{self.root}: no manifest.csv. Expected the training folder "
                             "(manifest.csv, 2d/, 3d/) or a cache .npz made by `repmedsam-ov train build-cache`.")
        with open(manifest, newline="") as f:
            self.rows = {r["name"]: r for r in csv.DictReader(f)}
        self._volumes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.items: list[Item] = []
        for name, row in self.rows.items():
            if row["kind"] == "2d":
                self.items.append(Item(name, row["source"]))
            else:
                _, gts = self._volume(name)
                for z in np.flatnonzero(gts.reshape(gts.shape[0], -1).any(axis=1)):
                    self.items.append(Item(name, row["source"], int(z)))
                self._volumes.clear()  # keep memory flat while indexing; reloaded on demand

    def _volume(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._volumes:
            path = self.root / self.rows[name]["image"]
            with np.load(path, allow_pickle=False) as npz:
                self._volumes[name] = (npz["imgs"], npz["gts"])
        return self._volumes[name]

    def raw(self, item: Item) -> tuple[bytes, bytes]:
        """The item's image and label map as encoded file bytes (for the cache)."""
        if item.z < 0:
            row = self.rows[item.name]
            return (self.root / row["image"]).read_bytes(), (self.root / row["labels"]).read_bytes()
        imgs, gts = self._volume(item.name)
        labels = gts[item.z] if gts.max() <= 255 else gts[item.z].astype(np.uint16)
        return cv2.imencode(".png", imgs[item.z])[1].tobytes(), cv2.imencode(".png", labels)[1].tobytes()

    def read(self, item: Item) -> tuple[np.ndarray, np.ndarray]:
        """-> image uint8 (H, W, 3) RGB or (H, W) grey; labels uint16 (H, W)."""
        if item.z < 0:
            row = self.rows[item.name]
            image_path, label_path = self.root / row["image"], self.root / row["labels"]
            image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
            labels = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
            if image is None or labels is None:
                raise InputError(f"{image_path if image is None else label_path}: cannot read the image.")
            if image.ndim == 3:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            return image, labels.astype(np.uint16, copy=False)
        imgs, gts = self._volume(item.name)
        return imgs[item.z], gts[item.z].astype(np.uint16)


class CacheSource:
    """Reads items from a compact cache file written by `build_cache`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            with np.load(self.path, allow_pickle=False) as npz:
                version = int(npz["format_version"])
                self.blob, self.offsets = npz["blob"], npz["offsets"]
                names, sources, zs = npz["names"], npz["sources"], npz["z"]
        except KeyError as e:
            raise InputError(f"{self.path}: not a training cache (missing {e}).") from None
        except (ValueError, OSError) as e:
            raise InputError(f"{self.path}: cannot read the training cache ({e}).") from None
        if version != CACHE_FORMAT_VERSION:
            raise InputError(f"{self.path}: cache format {version}, expected {CACHE_FORMAT_VERSION}; "
                             "rebuild it with `repmedsam-ov train build-cache`.")
        self.items = [Item(str(n), str(s), int(z)) for n, s, z in zip(names, sources, zs)]
        self._row = {item: i for i, item in enumerate(self.items)}

    def raw(self, item: Item) -> tuple[bytes, bytes]:
        """The item's image and label map as stored (encoded file bytes), for a smaller cache."""
        a, b, c, d = self.offsets[self._row[item]]
        return self.blob[a:b].tobytes(), self.blob[c:d].tobytes()

    def read(self, item: Item) -> tuple[np.ndarray, np.ndarray]:
        i = self._row[item]
        a, b, c, d = self.offsets[i]
        image = _decode(self.blob[a:b], f"{self.path}[{item.key}] image", rgb=True)
        labels = _decode(self.blob[c:d], f"{self.path}[{item.key}] labels", rgb=False)
        return image, labels.astype(np.uint16, copy=False)


def open_source(path: str | os.PathLike) -> FolderSource | CacheSource:
    """A training folder (with manifest.csv) or a cache .npz."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such training folder or cache file.")
    return CacheSource(path) if path.is_file() else FolderSource(path)


def select_subset(items: list[Item], n: int | None, seed: int = 0) -> list[Item]:
    """n items drawn round-robin across sources (seeded), so that a tiny subset still covers every source.

    Whole 3D volumes are not kept together: slices are items like 2D images. None or n >= len -> all.
    """
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        raise UsageError(f"--subset {n}: expected a positive number of images.")
    rng = np.random.default_rng(seed)
    by_source: dict[str, list[Item]] = {}
    for item in items:
        by_source.setdefault(item.source, []).append(item)
    queues = {s: [v[i] for i in rng.permutation(len(v))] for s, v in sorted(by_source.items())}
    chosen: list[Item] = []
    while len(chosen) < n:
        for queue in queues.values():
            if queue and len(chosen) < n:
                chosen.append(queue.pop())
    return chosen


def build_cache(source: FolderSource | CacheSource, out: str | os.PathLike, items: list[Item] | None = None) -> Path:
    """Write the compact cache of `items` (default: all of the source's) to `out` atomically."""
    out = Path(out)
    items = source.items if items is None else items
    chunks, offsets, pos = [], np.zeros((len(items), 4), dtype=np.int64), 0
    for i, item in enumerate(items):
        image, labels = source.raw(item)
        offsets[i] = pos, pos + len(image), pos + len(image), pos + len(image) + len(labels)
        chunks += [image, labels]
        pos += len(image) + len(labels)
    with atomic_path(out, suffix=".npz") as tmp:  # np.savez appends .npz to other names
        np.savez(tmp, format_version=np.int64(CACHE_FORMAT_VERSION),
                 blob=np.frombuffer(b"".join(chunks), dtype=np.uint8), offsets=offsets,
                 names=np.array([it.name for it in items]), sources=np.array([it.source for it in items]),
                 z=np.array([it.z for it in items], dtype=np.int32))
    return out
