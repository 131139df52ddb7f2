"""Fuzz the C++ runtime directly through `repmedsam_ov._core` (and the `Segmenter` wrapper over it), in a
worker process: a segfault or abort here must not take the test session down, so the parent
(test_fuzz_core.py, benchmarks/fuzz.py) runs this module as a child and reads its JSON lines.

    python -m tests.fuzz.core_worker MODEL_DIR --seed S --cases N

For each case it prints {"i": i, "case": description} before the call and {"i": i, "outcome": "ok" |
"rejected", "type": ..., "message": ...} after, flushed, so that when the child dies the parent knows the
case that killed it. Cases draw random shapes (empty, 1xN, large), strides (non-contiguous, negative,
Fortran), channel counts, dtypes, box arrays (NaN, inf, inverted, huge values, wrong column counts, up to
70,000 rows) and Segmenter options (precision names, thread/stream/cache/batch counts, model folders) from a
seeded numpy generator, so a seed replays. No torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BOX_VALUES = [0.0, 1.0, 2.5, 5.0, 10.0, 255.0, 256.0, -1.0, -0.0, 1e308, -1e308, 1e-300, 2.0**31, 2.0**53,
              float("nan"), float("inf"), float("-inf")]


def _array(rng, rank=None, dtype=None, max_side=40):
    rank = int(rng.integers(0, 5)) if rank is None else rank
    shape = [int(rng.choice([0, 1, 1, 2, 3, 4, int(rng.integers(1, max_side + 1))])) for _ in range(rank)]
    if dtype is None:
        dtype = rng.choice(["uint8"] * 6 + ["int8", "uint16", "float32", "bool", "float64", "int64"])
    array = rng.integers(0, 255, shape).astype(dtype)
    layout = rng.integers(0, 6)
    if layout == 0 and array.ndim >= 2:
        array = array.T  # Fortran order
    elif layout == 1 and array.ndim >= 1 and array.shape[0] > 1:
        array = array[::-1]  # negative stride
    elif layout == 2 and array.ndim >= 2:
        array = array[:, ::2]  # non-contiguous
    return array


def _image(rng, kind):
    if rng.integers(0, 4) == 0:
        return _array(rng)
    if rng.integers(0, 40) == 0:  # a side past 2^31 (lazily allocated zeros: no memory is touched)
        return np.zeros((int(rng.choice([2**31 + 7, 2**32 + 3])), 1) + (() if kind == "2d" else (1,)), np.uint8)
    if kind == "2d":
        h, w = (int(v) for v in rng.integers(1, 64, 2))
        if rng.integers(0, 8) == 0:
            h, w = (1, int(rng.integers(1000, 20000))) if rng.integers(0, 2) else (int(rng.integers(1000, 20000)), 1)
        shape = (h, w, int(rng.choice([3, 3, 1, 4, 2]))) if rng.integers(0, 3) else (h, w)
    else:
        shape = tuple(int(v) for v in rng.integers(1, 24, 3))
    return rng.integers(0, 255, shape).astype(np.uint8)


def _boxes(rng, columns, shape):
    style = rng.integers(0, 8)
    n = int(rng.choice([0, 1, 1, 2, 3, 8, 9, 256, 300]))
    if style == 0:
        n = int(rng.choice([65535, 65536, 70000]))
    cols = columns if rng.integers(0, 6) else int(rng.choice([0, 3, 4, 5, 6, 7]))
    dims = list(shape[:3]) + [1] * 3
    # mostly valid boxes, sometimes hostile values
    lo = rng.integers(0, 8, (n, cols)).astype(np.float64)
    boxes = np.concatenate([lo, lo + rng.integers(0, 8, (n, cols))], axis=1)[:, :cols] if cols else lo
    if columns == 6 and cols == 6:
        boxes[:, 2] = 0
        boxes[:, 5] = np.minimum(boxes[:, 5], max(dims[0] - 1, 0))
    if style in (1, 2) and boxes.size:
        flat = boxes.reshape(-1)
        at = rng.integers(0, flat.size, int(rng.integers(1, 4)))
        flat[at] = rng.choice(BOX_VALUES, at.size)
    if style == 3 and boxes.size:
        boxes = boxes[:, ::-1].copy()  # inverted
    if style == 4:
        boxes = boxes.astype(rng.choice(["int64", "float32", "int8", "uint8", "object", "complex64", "U3", "bool"]))
    if style == 5:
        boxes = boxes.reshape(-1) if rng.integers(0, 2) else boxes[None]
    if style == 6 and boxes.ndim == 2 and boxes.shape[0] > 1:
        boxes = boxes[::2]  # non-contiguous
    return boxes


def _describe(value):
    if isinstance(value, np.ndarray):
        return {"shape": list(value.shape), "dtype": str(value.dtype), "strides": list(value.strides),
                "c": bool(value.flags.c_contiguous),
                "values": value.reshape(-1)[:12].tolist() if value.dtype.kind in "iufb" else None}
    return value


def make_case(rng, model: str, junk: dict[str, str]):
    """(description, callable) of one case."""
    from repmedsam_ov import Segmenter, _core

    op = rng.choice(["seg2d", "seg2d", "seg3d", "seg3d", "wrap2d", "wrap3d", "options", "preprocess", "resize_area",
                     "upsample", "mask_box", "scale_box", "resized_extent"])
    if op in ("seg2d", "seg3d", "wrap2d", "wrap3d"):
        image = _image(rng, "2d" if op.endswith("2d") else "3d")
        boxes = _boxes(rng, 4 if op.endswith("2d") else 6, image.shape)
        method = "segment_2d" if op.endswith("2d") else "segment_3d"
        if op.startswith("seg"):
            target = lambda: getattr(_SEGMENTERS.setdefault("core", _core.Segmenter(model, "f32", 2)), method)
        else:
            target = lambda: getattr(_SEGMENTERS.setdefault("wrap", Segmenter(model, "f32", 2)), method)
        return {"op": op, "image": _describe(image), "boxes": _describe(boxes)}, lambda: target()(image, boxes)
    if op == "options":
        kwargs = {"precision": str(rng.choice(["auto", "f32", "bf16", "int8", "fp16", "", "F32", "f32\x00"])),
                  "threads": int(rng.choice([0, 1, 2, -1, 64, 2**31 - 1])),
                  "streams": int(rng.choice([0, 1, 2, -1, 3, 1000])),
                  "max_cached_slices": int(rng.choice([256, 1, 0, -1, 2**31 - 1])),
                  "decoder_batch": int(rng.choice([8, 1, 0, -5, 1 << 20]))}
        folder = str(rng.choice([model, model, junk["missing"], junk["empty"], junk["file"], junk["broken"], ""]))
        return {"op": op, "model": Path(folder).name, **kwargs}, lambda: _core.Segmenter(folder, **kwargs).describe()
    if op == "preprocess":
        image = _array(rng) if rng.integers(0, 2) else _image(rng, "2d")
        return {"op": op, "image": _describe(image)}, lambda: _core.preprocess(image)
    if op == "resize_area":
        image = _array(rng) if rng.integers(0, 2) else _image(rng, "2d")
        h, w = (int(rng.choice([0, 1, 2, 256, -1, 3000, 2**31 - 1])) for _ in range(2))
        if abs(h * w) > 10**7:  # a valid but huge output size is an allocation, not a parser test
            h, w = 3, min(w, 3000)
        return {"op": op, "image": _describe(image), "size": [h, w]}, lambda: _core.resize_area(image, h, w)
    if op == "upsample":
        logits = _array(rng, rank=2, dtype="float32", max_side=300) if rng.integers(0, 2) else \
            rng.normal(size=(256, 256)).astype(np.float32)
        if logits.size and rng.integers(0, 4) == 0:
            logits.reshape(-1)[0] = np.nan
        args = [int(rng.choice([0, 1, 64, 256, 257, -1])) for _ in range(2)] + \
               [int(rng.choice([1, 5, 300, 0, -2])) for _ in range(2)]
        return {"op": op, "logits": _describe(logits), "args": args}, lambda: _core.upsample(logits, *args)
    if op == "mask_box":
        mask = _array(rng, rank=int(rng.choice([2, 2, 1, 3])), dtype=str(rng.choice(["uint8", "uint8", "float32"])))
        return {"op": op, "mask": _describe(mask)}, lambda: _core.mask_box(mask)
    if op == "scale_box":
        box = [float(v) for v in rng.choice(BOX_VALUES, int(rng.choice([4, 4, 3, 5])))]
        h, w = (int(rng.choice([1, 2, 256, 0, -1, 2**31 - 1])) for _ in range(2))
        return {"op": op, "box": box, "size": [h, w]}, lambda: _core.scale_box(box, h, w)
    h, w = (int(rng.choice([1, 2, 256, 0, -1, 2**31 - 1, 3])) for _ in range(2))
    return {"op": op, "size": [h, w]}, lambda: _core.resized_extent(h, w)


_SEGMENTERS: dict = {}


def run(model: str, seed: int, cases: int, out=sys.stdout) -> None:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        junk = {"missing": str(Path(tmp) / "missing"), "empty": str(Path(tmp) / "empty"),
                "file": str(Path(tmp) / "file.xml"), "broken": str(Path(tmp) / "broken")}
        Path(junk["empty"]).mkdir()
        Path(junk["file"]).write_text("<xml")
        Path(junk["broken"]).mkdir()
        for name in ("encoder.xml", "decoder.xml"):
            (Path(junk["broken"]) / name).write_text("<?xml version='1.0'?><net name='x' version='11'><layers>")
        for i in range(cases):
            description, call = make_case(rng, model, junk)
            print(json.dumps({"i": i, "case": description}, default=str), file=out, flush=True)
            start = time.perf_counter()
            try:
                call()
                result = {"outcome": "ok"}
            except Exception as e:  # noqa: BLE001 -- every rejection must be an exception with a message
                result = {"outcome": "rejected", "type": type(e).__name__, "message": str(e)[:500]}
            result.update(i=i, op=description["op"], seconds=round(time.perf_counter() - start, 4))
            print(json.dumps(result), file=out, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=100)
    args = parser.parse_args()
    run(args.model, args.seed, args.cases)


if __name__ == "__main__":
    main()
