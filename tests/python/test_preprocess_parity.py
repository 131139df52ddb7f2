"""The C++ pre- and postprocessing against the reference's own tools: cv2 (INTER_AREA resize), numpy (the
normalisation and box arithmetic of the published script) and torch (bilinear mask upsampling)."""

from __future__ import annotations

import numpy as np
import pytest

from repmedsam_ov import _core

from repmedsam_ov import reference
from repmedsam_ov.reference import box_to_model, mask_to_box, resize_longest_side

cv2 = pytest.importorskip("cv2")

# Shapes that exercise every OpenCV path: integer factors (2x2 fast path, 4x4), non-integer downscales,
# upscales (bilinear fallback), one side up and one down, thin images and the size of a phone photo.
EDGE_SIZES = [(1, 1), (1, 7), (1, 300), (1, 512), (2, 1024), (7, 1), (300, 1), (2, 3), (255, 256), (256, 255),
              (256, 256), (257, 256), (512, 512), (512, 256), (1024, 1024), (768, 512), (384, 512), (76, 42),
              (100, 768), (1000, 3), (2604, 1726), (3024, 4032)]


def _random_sizes(seed: int, count: int, top: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    return [tuple(int(v) for v in rng.integers(1, top, 2)) for _ in range(count)]


def _content(rng, shape, kind: int) -> np.ndarray:
    if kind == 0:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if kind == 1:  # a sparse label mask: few pixels, one label value (the 3D walk's case)
        return ((rng.random(shape) < 0.03) * int(rng.integers(1, 256))).astype(np.uint8)
    return np.clip(rng.normal(128, 60, shape), 0, 255).astype(np.uint8)


def _reference_extent(h: int, w: int) -> tuple[int, int]:
    scale = 256 * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


@pytest.mark.parametrize("sizes", [EDGE_SIZES, _random_sizes(1, 120, 1500), _random_sizes(2, 120, 300)],
                         ids=["edge", "random-large", "random-small"])
def test_resize_area_matches_cv2(sizes):
    rng = np.random.default_rng(len(sizes))
    for h, w in sizes:
        for channels in (1, 3):
            image = _content(rng, (h, w) if channels == 1 else (h, w, 3), int(rng.integers(0, 3)))
            targets = [_core.resized_extent(h, w), tuple(int(v) for v in rng.integers(1, 400, 2))]
            for dh, dw in targets:
                expected = cv2.resize(image, (dw, dh), interpolation=cv2.INTER_AREA).reshape(
                    (dh, dw) if channels == 1 else (dh, dw, 3))
                got = _core.resize_area(image, dh, dw)
                assert np.array_equal(got, expected), f"{(h, w, channels)} -> {(dh, dw)}: " \
                    f"{int((got != expected).sum())} pixels differ"


def test_resized_extent_matches_reference():
    for h, w in EDGE_SIZES + _random_sizes(3, 500, 5000):
        ref = _reference_extent(h, w)
        if min(ref) >= 1:
            assert _core.resized_extent(h, w) == ref, (h, w)
    # The reference's cv2.resize fails when a side rounds to 0 (an image over 512 times wider than high);
    # the runtime keeps one row.
    assert _reference_extent(1, 1000)[0] == 0
    assert _core.resized_extent(1, 1000) == (1, 256)


@pytest.mark.parametrize("grey", [True, False], ids=["grey", "rgb"])
def test_preprocess_matches_reference(grey):
    rng = np.random.default_rng(4 + grey)
    for h, w in [(2604, 1726), (76, 42), (512, 512), (1, 300), (300, 1), (37, 999)] + _random_sizes(5, 30, 1200):
        image = rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)
        if rng.random() < 0.2:
            image[:] = 7  # constant image: max - min = 0, normalised to zeros via the 1e-8 floor
        expected, extent = reference.preprocess(image)
        expected = expected[0]
        got, got_extent = _core.preprocess(image)
        assert got_extent == extent
        assert got.dtype == np.float32 and np.array_equal(got, expected), (h, w)


def test_scale_box_truncates_like_reference():
    rng = np.random.default_rng(6)
    for h, w in EDGE_SIZES + _random_sizes(7, 200, 4000):
        for _ in range(5):
            box = sorted(rng.uniform(0, w, 2)) + sorted(rng.uniform(0, h, 2))
            box = [box[0], box[2], box[1], box[3]]
            if rng.random() < 0.5:
                box = [float(int(v)) for v in box]
            assert list(_core.scale_box(box, h, w)) == box_to_model(box, (h, w)).tolist(), (h, w, box)
    assert list(_core.scale_box([2604, 2604, 2604, 2604], 2604, 1726)) == box_to_model([2604] * 4, (2604, 1726)).tolist()


def test_mask_box_matches_reference():
    rng = np.random.default_rng(8)
    for h, w in [(512, 512), (700, 300), (76, 42), (63, 999)] + _random_sizes(9, 60, 900):
        mask = np.zeros((h, w), np.uint8)
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        mask[y0:y0 + int(rng.integers(1, 40)), x0:x0 + int(rng.integers(1, 40))] = int(rng.integers(1, 256))
        expected = mask_to_box(mask)
        assert _core.mask_box(mask) == (None if expected is None else expected.tolist()), (h, w)


def test_mask_box_keeps_the_label_value():
    """A thin mask survives INTER_AREA averaging with a high label value but not with value 1 (why the
    reference's temporary volume holds the object's label)."""
    mask = np.zeros((300, 700), np.uint8)
    mask[100:140, 350] = 1
    assert resize_longest_side(mask).max() == 0 and mask_to_box(mask) is None and _core.mask_box(mask) is None
    mask[100:140, 350] = 15
    assert _core.mask_box(mask) == mask_to_box(mask).tolist()


def test_upsample_matches_torch():
    torch = pytest.importorskip("torch")
    interpolate = torch.nn.functional.interpolate
    rng = np.random.default_rng(10)
    sizes = [(2604, 1726), (3024, 4032), (512, 512), (76, 42), (256, 256), (1, 300), (300, 1), (200, 200)]
    for h, w in sizes + _random_sizes(11, 40, 1500):
        new_h, new_w = _core.resized_extent(h, w)
        logits = rng.normal(0, 3, (256, 256)).astype(np.float32)
        expected = interpolate(torch.from_numpy(logits)[None, None, :new_h, :new_w], size=(h, w), mode="bilinear",
                               align_corners=False)[0, 0].numpy()
        values, mask = _core.upsample(logits, new_h, new_w, h, w)
        np.testing.assert_allclose(values, expected, rtol=0, atol=1e-5)
        differ = mask != (expected > 0)
        # torch's kernels fuse multiply-adds; ours do too, so masks agree wherever the sign is not a
        # float32 rounding away from zero.
        assert not differ.any() or np.abs(expected[differ]).max() < 1e-5, (h, w)
        assert np.array_equal(mask, values > 0)
