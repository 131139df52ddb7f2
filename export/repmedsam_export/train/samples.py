"""Turning items into training samples: inference preprocessing, one random object, box jitter, augmentation,
and a resumable source-balanced order.

Preprocessing is ARCHITECTURE.md §2's: resize the longest side to 256 with INTER_AREA (a no-op for the
stored training data), min-max normalise over all channels, zero-pad bottom and right to 256×256. Flips
are applied before padding so that padding stays at the bottom and right as at inference.

Every random choice of a sample comes from a generator seeded by (seed, epoch, position in the epoch), so
a sample is the same whether the run was interrupted or not, and whatever the number of workers or ranks.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from repmedsam_ov import reference

from .data import Item

__all__ = ["IMAGE_SIZE", "EMBEDDING_STRIDE", "resize_longest_side", "preprocess", "jittered_box", "Augment",
           "BalancedOrder", "item_group", "SegmentationSamples", "EmbeddingSamples", "augmented_view", "dihedral", "crop_pair"]

IMAGE_SIZE = 256
EMBEDDING_STRIDE = 4  # input pixels per embedding cell (256 -> 64): crops start on this grid


def resize_longest_side(image: np.ndarray, size: int = IMAGE_SIZE, labels: bool = False) -> np.ndarray:
    """uint8/uint16 (H, W[, C]) -> resized so the longest side is `size` (INTER_AREA; nearest for labels)."""
    h, w = image.shape[:2]
    scale = size * 1.0 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    if (newh, neww) == (h, w):
        return image
    return cv2.resize(image, (neww, newh), interpolation=cv2.INTER_NEAREST if labels else cv2.INTER_AREA)


def normalise(image: np.ndarray) -> np.ndarray:
    """uint8 (h, w) or (h, w, 3) -> float32 (h, w, 3) min-max normalised over all channels."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=-1)
    lo, hi = float(image.min()), float(image.max())
    return ((image - lo) / max(hi - lo, 1e-8)).astype(np.float32)


def pad_chw(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """float32 (h, w, 3) -> (3, size, size), zero-padded bottom and right."""
    out = np.zeros((3, size, size), dtype=np.float32)
    out[:, : image.shape[0], : image.shape[1]] = image.transpose(2, 0, 1)
    return out


def preprocess(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) -> float32 (3, 256, 256) exactly as at inference (no augmentation)."""
    return reference.preprocess(image)[0][0]


def jittered_box(mask: np.ndarray, rng: np.random.Generator, shift: int, size: int = IMAGE_SIZE,
                 shrink: int = 0) -> np.ndarray:
    """Bounding box of a non-empty (h, w) mask, each side moved by a random -shrink..shift pixels (outwards
    positive; 0..5 is LiteMedSAM's baseline) and clipped to [0, size-1]. A side never moves inwards past the
    box's middle, so the box stays non-empty. -> float32 (4,) XYXY in model space (pixels of 256)."""
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    d = rng.integers(-shrink, shift + 1, size=4) if shift > 0 or shrink > 0 else np.zeros(4, dtype=np.int64)
    d = np.maximum(d, -np.array([(x1 - x0) // 2, (y1 - y0) // 2] * 2))
    return np.array([max(0, x0 - d[0]), max(0, y0 - d[1]),
                     min(size - 1, x1 + d[2]), min(size - 1, y1 + d[3])], dtype=np.float32)


class Augment:
    """Random flips (each with probability 0.5) and, when `colour`, a colour jitter on the normalised image:
    per-channel gain 0.9–1.1, gamma 0.7–1.4, brightness ±0.1, clipped to [0, 1]. A min-max normalisation
    would undo a jitter applied before it, hence after."""

    def __init__(self, flips: bool = True, colour: bool = False) -> None:
        self.flips, self.colour = flips, colour

    def geometric(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
        if self.flips and rng.random() < 0.5:
            image, labels = image[:, ::-1], labels[:, ::-1]
        if self.flips and rng.random() < 0.5:
            image, labels = image[::-1], labels[::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(labels)

    def photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """image: float32 (h, w, 3) in [0, 1]."""
        if not self.colour:
            return image
        gain = rng.uniform(0.9, 1.1, size=3).astype(np.float32)
        gamma = np.float32(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
        shift = np.float32(rng.uniform(-0.1, 0.1))
        return np.clip(image ** gamma * gain + shift, 0.0, 1.0).astype(np.float32)


class BalancedOrder:
    """The sequence of item indices of each epoch, drawn with replacement so that source s gets a share
    proportional to n_s ** balance (1: as stored, Kvasir dominates; 0: every source equal; 0.5 default).

    `group_shares` ({group: share}, groups from `item_group`: "2D", or a 3D item's modality such as "CT")
    first fixes each group's share of the samples, then splits it among the group's sources as above;
    groups it leaves out share what is left in proportion to their balanced weight (and items of groups
    that are absent get nothing). `epoch_size` samples per epoch (default: the number of items).
    Deterministic in (seed, epoch).
    """

    def __init__(self, items: list[Item], balance: float = 0.5, seed: int = 0, epoch_size: int | None = None,
                 group_shares: dict[str, float] | None = None):
        sources = [it.source for it in items]
        counts = {s: sources.count(s) for s in set(sources)}
        weights = np.array([counts[s] ** balance / counts[s] for s in sources], dtype=np.float64)
        if group_shares:
            groups = np.array([item_group(it) for it in items])
            named = {g: share for g, share in group_shares.items() if (groups == g).any()}
            rest = ~np.isin(groups, list(named))
            left = max(0.0, 1.0 - sum(named.values()))
            total = weights.sum()
            for g, share in named.items():
                weights[groups == g] *= share / weights[groups == g].sum()
            if rest.any():
                weights[rest] *= left / weights[rest].sum() if left > 0 else 0.0
            if total <= 0 or weights.sum() <= 0:
                raise ValueError(f"group shares {group_shares}: no sample left to draw")
        self.p = weights / weights.sum()
        self.seed = seed
        self.epoch_size = epoch_size or len(items)

    def epoch(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        return rng.choice(len(self.p), size=self.epoch_size, replace=True, p=self.p)

    def shares(self, items: list[Item]) -> dict[str, float]:
        out: dict[str, float] = {}
        for it, p in zip(items, self.p):
            out[it.source] = out.get(it.source, 0.0) + float(p)
        return out


def item_group(item: Item) -> str:
    """"2D" for a 2D image; a 3D slice's modality, the second `_` field of its case name ("CT", "MR")."""
    parts = item.name.split("_")
    return "2D" if item.z < 0 else (parts[1] if len(parts) > 1 else "3D")


def batch_keys(order: BalancedOrder, epoch: int, consumed: int, batch_size: int, rank: int, world: int):
    """Yield this rank's batches of keys (epoch, position, item index) from global position `consumed` on.

    Each step takes batch_size × world consecutive samples; rank r gets the r-th block of batch_size.
    A final partial step is dropped.
    """
    seq = order.epoch(epoch)
    step = batch_size * world
    for start in range(consumed, len(seq) - step + 1, step):
        lo = start + rank * batch_size
        yield [(epoch, pos, int(seq[pos])) for pos in range(lo, lo + batch_size)]


class SegmentationSamples(torch.utils.data.Dataset):
    """key (epoch, position, item index) -> dict(image (3,256,256) f32, mask (1,256,256) f32, box (4,) f32).

    One object is chosen uniformly among those in the item; the box comes from its mask at the 256 scale,
    each side moved by -box_shrink..box_shift pixels (outwards positive). With `neighbour_box` p > 0, a 3D
    slice takes, with probability p, the box of the same object on a neighbouring slice (z-1 or z+1, drawn
    evenly, jittered alike), as 3D propagation prompts it; when that slice is not an item or lacks the
    object, its own box.
    """

    def __init__(self, source, items: list[Item], augment: Augment, seed: int = 0, box_shift: int = 5,
                 box_shrink: int = 0, neighbour_box: float = 0.0):
        self.source, self.items, self.augment = source, items, augment
        self.seed, self.box_shift, self.box_shrink = seed, box_shift, box_shrink
        self.neighbour_box = neighbour_box
        self.slices = {(it.name, it.z): it for it in items if it.z >= 0}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key):
        epoch, position, index = key
        rng = np.random.default_rng([self.seed, epoch, position])
        item = self.items[index]
        image, labels = self.source.read(item)
        image = resize_longest_side(image)
        neighbour = self._neighbour(item, rng)
        if neighbour is not None:  # flipped with the slice: stacked as a second label channel
            labels = np.stack([labels, self.source.read(neighbour)[1]], axis=-1)
        labels = resize_longest_side(labels, labels=True)
        image, labels = self.augment.geometric(image, labels, rng)
        if neighbour is not None:
            labels, prompt_labels = np.ascontiguousarray(labels[..., 0]), labels[..., 1]
        present = np.unique(labels)
        present = present[present > 0]
        if len(present) == 0:  # only if a resize erased every object: keep the batch shape, learn "nothing"
            mask = np.zeros(labels.shape, dtype=bool)
            box = np.array([0, 0, IMAGE_SIZE - 1, IMAGE_SIZE - 1], dtype=np.float32)
        else:
            value = present[rng.integers(len(present))]
            mask = prompt = labels == value
            if neighbour is not None and (prompt_labels == value).any():
                prompt = prompt_labels == value
            box = jittered_box(prompt, rng, self.box_shift, shrink=self.box_shrink)
        image = pad_chw(self.augment.photometric(normalise(image), rng))
        full = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        full[0, : mask.shape[0], : mask.shape[1]] = mask
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(full),
                "box": torch.from_numpy(box), "index": index}

    def _neighbour(self, item: Item, rng: np.random.Generator) -> Item | None:
        """The neighbouring slice whose box prompts this one, or None. Draws nothing unless enabled for a 3D
        slice, so other samples stay as without the option."""
        if self.neighbour_box <= 0 or item.z < 0 or rng.random() >= self.neighbour_box:
            return None
        return self.slices.get((item.name, item.z + (1 if rng.random() < 0.5 else -1)))


def augmented_view(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A new view of a uint8 (H, W[, 3]) image for distillation: with probability 0.5 a crop of 50–100% of
    each side (zoom in), a rotation by a multiple of 90°, a horizontal flip with probability 0.5, then a
    gamma 0.7–1.4 and per-channel gain 0.9–1.1. Returned as uint8, to be preprocessed as at inference."""
    h, w = image.shape[:2]
    if rng.random() < 0.5:
        ch, cw = max(8, int(h * rng.uniform(0.5, 1.0))), max(8, int(w * rng.uniform(0.5, 1.0)))
        y, x = int(rng.integers(0, h - min(ch, h) + 1)), int(rng.integers(0, w - min(cw, w) + 1))
        image = image[y: y + ch, x: x + cw]
    image = np.rot90(image, int(rng.integers(4)))
    if rng.random() < 0.5:
        image = image[:, ::-1]
    gamma = np.exp(rng.uniform(np.log(0.7), np.log(1.4)))
    gain = rng.uniform(0.9, 1.1, size=3 if image.ndim == 3 else 1)
    levels = np.arange(256, dtype=np.float64) / 255.0
    luts = [np.clip(255.0 * g * levels ** gamma + 0.5, 0, 255).astype(np.uint8) for g in gain]
    if image.ndim == 2:
        return luts[0][image]
    return np.stack([luts[c][image[..., c]] for c in range(3)], axis=-1)


def dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Rotate the last two axes by k·90° and optionally flip the last one: applied alike to a (3, 256, 256)
    input and its (C, 64, 64) target grid, the pair stays aligned."""
    a = np.rot90(a, k, axes=(-2, -1))
    return np.ascontiguousarray(a[..., ::-1] if flip else a)


class EmbeddingSamples(torch.utils.data.Dataset):
    """key -> dict(image (3,256,256) f32, target (256,64,64) f32 teacher embedding, index).

    Stored targets (`store`, from embed-teacher) come with a random rotation/flip of input and target grid
    alike. With a `teacher` (see ov_teacher), a share `views` of the samples (all of them without a store)
    are `augmented_view`s whose targets the teacher computes on the fly: embeddings need no labels, so
    every view is a new training pair. With `crop`, each pair is cut to a random crop×crop part of the input
    and the matching part of the target (`crop_pair`): the encoder is convolutional, and a 128-pixel crop
    costs about a fifth of a whole 256 image's step.

    `deferred=True` (no store, no teacher, no crop): every sample is a view returned without a target, for a
    trainer that runs the teacher on the whole batch on its own device (a GPU teacher cannot run inside
    data-loading processes, and one image at a time would leave it idle).
    """

    def __init__(self, source, items: list[Item], store=None, teacher=None, views: float = 0.0, seed: int = 0,
                 crop: int = 0, deferred: bool = False):
        if deferred and (store is not None or teacher is not None or crop):
            raise ValueError("deferred targets: views only, whole images, the teacher run by the trainer")
        if store is None and teacher is None and not deferred:
            raise ValueError("distillation needs stored teacher embeddings or a teacher")
        if crop and (crop % EMBEDDING_STRIDE or not 0 < crop <= IMAGE_SIZE):
            raise ValueError(f"crop {crop}: expected a multiple of {EMBEDDING_STRIDE} up to {IMAGE_SIZE}")
        self.source, self.items, self.store, self.teacher = source, items, store, teacher
        self.views = 1.0 if store is None else (views if teacher is not None else 0.0)
        self.seed, self.crop, self.deferred = seed, crop, deferred

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key):
        epoch, position, index = key
        rng = np.random.default_rng([self.seed, epoch, position])
        item = self.items[index]
        image, _ = self.source.read(item)
        if rng.random() < self.views:
            view = augmented_view(resize_longest_side(image), rng)
            x = preprocess(view)  # resizes the view to 256 again
            if self.deferred:
                return {"image": torch.from_numpy(x), "index": index}
            target = self.teacher.embed_batch(x[None])[0].astype(np.float32)
            k, flip = 0, False  # the view is already rotated and flipped
        else:
            view = image
            x, target = preprocess(image), self.store.get(item.key).astype(np.float32)
            k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
        if self.crop:  # before the rotation, while the content sits at the top left
            x, target = crop_pair(x, target, resize_longest_side(view).shape[:2], self.crop, rng)
        x, target = dihedral(x, k, flip), dihedral(target, k, flip)
        return {"image": torch.from_numpy(x), "target": torch.from_numpy(target), "index": index}


def crop_pair(x: np.ndarray, target: np.ndarray, content: tuple[int, int], size: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random size×size crop of the (3, 256, 256) input and the matching (C, size/4, size/4) part of its
    target grid. The corner lies on the 4-pixel grid (the encoder's stride, so the crop's cells sample the
    image exactly as the whole image's do) and, where the content (h, w) at the top left allows, inside it."""
    row, col = (int(rng.integers(0, max(0, extent - size) // EMBEDDING_STRIDE + 1)) for extent in content)
    cells, top, left = size // EMBEDDING_STRIDE, row * EMBEDDING_STRIDE, col * EMBEDDING_STRIDE
    return (np.ascontiguousarray(x[:, top:top + size, left:left + size]),
            np.ascontiguousarray(target[:, row:row + cells, col:col + cells]))

