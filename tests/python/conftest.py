"""Fixtures of the runtime tests: a toy model folder built with OpenVINO's opset API (instant, for API and
3D-walk tests), golden cases, and a pure-numpy/cv2 re-implementation of the reference pipeline's 3D walk for
the toy model. The exported golden model is tests/conftest.py's `golden_model_dir` (exported once per session);
`golden_segmenter` compiles it once per option set. No torch in this process.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from repmedsam_ov.reference import box_to_model, mask_to_box, propagation_walk
from tests.conftest import GOLDEN

TOY_INFO = {
    "model_type": "rep_medsam", "format_version": "1", "image_size": "256", "embedding_shape": "256,64,64",
    "weight_precision": "f32", "int8": "false", "checkpoint_sha256": "0" * 64, "exporter_version": "toy",
}
TOY_OFFSET = np.float32(0.3)  # toy logits: distance to the box edge + 0.3, so exact zeros never occur


def build_toy_model(out: Path, info: dict[str, str] | None = None) -> Path:
    """A tiny model folder with the real interface: the encoder average-pools the image into 256 channels;
    the decoder ignores the image and returns, per box, logits = (distance inside the box's edge) + 0.3 over
    the 256x256 grid, so the mask is the box itself. Its masks are predictable, which lets tests follow the
    3D walk exactly."""
    import openvino as ov
    import openvino.opset13 as ops

    info = TOY_INFO if info is None else info
    out.mkdir(parents=True, exist_ok=True)

    image = ops.parameter([-1, 3, 256, 256], np.float32, name="image")
    pooled = ops.avg_pool(image, [4, 4], [0, 0], [0, 0], [4, 4], exclude_pad=True)
    weights = ops.constant(np.full((256, 3, 1, 1), 1 / 3, np.float32))
    embedding = ops.convolution(pooled, weights, [1, 1], [0, 0], [0, 0], [1, 1])
    embedding.output(0).get_tensor().set_names({"embedding"})
    encoder = ov.Model([embedding], [image], "toy_encoder")

    emb_in = ops.parameter([1, 256, 64, 64], np.float32, name="embedding")
    boxes = ops.parameter([-1, 4], np.float32, name="boxes")
    corner = [ops.unsqueeze(c, [2]) for c in ops.split(boxes, 1, 4).outputs()]  # 4 x (K, 1, 1)
    xs = ops.constant(np.arange(256, dtype=np.float32).reshape(1, 1, 256))
    ys = ops.constant(np.arange(256, dtype=np.float32).reshape(1, 256, 1))
    inside = ops.minimum(ops.minimum(ops.subtract(xs, corner[0]), ops.subtract(corner[2], xs)),
                         ops.minimum(ops.subtract(ys, corner[1]), ops.subtract(corner[3], ys)))
    keep_input = ops.multiply(ops.reduce_mean(emb_in, [0, 1, 2, 3], keep_dims=False), np.float32(0))
    logits = ops.add(ops.add(inside, np.float32(TOY_OFFSET)), keep_input)
    logits.output(0).get_tensor().set_names({"low_res_logits"})
    iou = ops.reduce_mean(logits, [1, 2], keep_dims=False)
    iou.output(0).get_tensor().set_names({"iou"})
    decoder = ov.Model([logits, iou], [emb_in, boxes], "toy_decoder")

    for model, name in ((encoder, "encoder"), (decoder, "decoder")):
        for key, value in info.items():
            model.set_rt_info(value, ["model_info", key])
        ov.save_model(model, out / f"{name}.xml", compress_to_fp16=False)
    return out


@pytest.fixture(scope="session")
def toy_model_dir(tmp_path_factory) -> Path:
    return build_toy_model(tmp_path_factory.mktemp("toy") / "model")


@pytest.fixture(scope="session")
def golden_segmenter(golden_model_dir):
    """`golden_segmenter(**options)`: a `Segmenter(golden_model_dir, precision="f32", **options)` compiled once per
    session per option set (defaults filled in, so `threads=1` and `threads=1, max_cached_slices=256` share
    one), for tests that only segment with it."""
    from repmedsam_ov import Segmenter

    signature = inspect.signature(Segmenter)
    compiled: dict[tuple, Segmenter] = {}

    def get(**options) -> Segmenter:
        bound = signature.bind(golden_model_dir, "f32", **options)
        bound.apply_defaults()
        key = tuple(sorted((k, str(v)) for k, v in bound.arguments.items()))
        if key not in compiled:
            compiled[key] = Segmenter(*bound.args, **bound.kwargs)
        return compiled[key]

    return get


def toy_logits(box: list[int]) -> np.ndarray:
    """The toy decoder's (256, 256) float32 logits for one model-space box."""
    xs = np.arange(256, dtype=np.float32)[None, :]
    ys = np.arange(256, dtype=np.float32)[:, None]
    x0, y0, x1, y1 = (np.float32(v) for v in box)
    inside = np.minimum(np.minimum(xs - x0, x1 - xs), np.minimum(ys - y0, y1 - ys))
    return (inside + TOY_OFFSET).astype(np.float32)


def toy_reference_3d(volume: np.ndarray, boxes: np.ndarray):
    """The published 3D loop (ARCHITECTURE.md §2) with the toy decoder: (labels, per-object decoder boxes).

    Built from `repmedsam_ov.reference` (per-object uint8 temp volume holding the label value, cv2 resize of
    the previous slice, bounding box + 3); the mask upsampling uses `_core.upsample`, which
    test_preprocess_parity checks against torch."""
    from repmedsam_ov import _core

    d, h, w = volume.shape
    new_h, new_w = _core.resized_extent(h, w)
    segs = np.zeros(volume.shape, np.uint16 if len(boxes) > 255 else np.uint8)
    trace = []
    for idx, b in enumerate(boxes, start=1):
        temp = np.zeros(volume.shape, np.uint8)
        x0, y0, z0, x1, y1, z1 = (int(v) for v in b)
        mid = box_to_model([x0, y0, x1, y1], (h, w)).tolist()
        z_mid, walk = propagation_walk(z0, z1, d)
        calls = []
        for z, prev in walk:
            box = mid
            if z != z_mid and (from_mask := mask_to_box(temp[prev])) is not None:
                box = from_mask.tolist()
            calls.append(box)
            _, mask = _core.upsample(toy_logits(box), new_h, new_w, h, w)
            temp[z, mask] = min(idx, 255)
        segs[temp > 0] = idx
        trace.append(calls)
    return segs, trace


def load_golden(name: str):
    """(imgs, boxes, golden segs, golden flat trace) of one golden case."""
    with np.load(GOLDEN / "cases" / f"{name}.npz", allow_pickle=False) as case:
        imgs, boxes = case["imgs"], case["boxes"]
    with np.load(GOLDEN / "segs" / f"{name}.npz", allow_pickle=False) as segs:
        gold = segs["segs"]
    trace = json.loads((GOLDEN / "trace" / f"{name}.json").read_text())["decoder_calls_box_256_in_order"]
    return imgs, boxes, gold, trace
