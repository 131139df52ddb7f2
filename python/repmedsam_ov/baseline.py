"""The straightforward OpenVINO-Python loop a user would write in an afternoon: the honest speed baseline.

One decoder call per box, every slice encoded again for each object that needs it, no pipelining. Same
semantics as the reference (numpy/OpenCV pre- and postprocessing from `reference`), so its masks agree with
the runtime's; it exists to measure what the C++ runtime's orchestration adds. Never torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io import Case, segs_dtype
from .reference import box_to_model, mask_to_box, preprocess, propagation_walk, upscale_logits

__all__ = ["OVPythonLoop"]


class OVPythonLoop:
    """model_dir: an exported model folder; precision: "f32" or "bf16" (OpenVINO's inference precision hint)."""

    def __init__(self, model_dir: str | os.PathLike, precision: str = "f32", threads: int | None = None) -> None:
        import openvino as ov

        self.precision = precision
        config = {"INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        model_dir = Path(model_dir)
        self.encoder = core.compile_model(model_dir / "encoder.xml", "CPU", config)
        self.decoder = core.compile_model(model_dir / "decoder.xml", "CPU", config)
        self.encoder_runs = 0
        self.decoder_calls = 0

    def _encode(self, image: np.ndarray):
        self.encoder_runs += 1
        tensor, new_hw = preprocess(image)
        return self.encoder(tensor)[0].copy(), new_hw

    def _mask(self, embedding, box256, new_hw, hw) -> np.ndarray:
        self.decoder_calls += 1
        logits = self.decoder({"embedding": embedding, "boxes": box256[None].astype(np.float32)})[0][0]
        return upscale_logits(logits, new_hw, hw) > 0

    def segment(self, case: Case) -> np.ndarray:
        image, boxes = case.imgs, case.boxes
        segs = np.zeros(image.shape[:3] if case.is_3d else image.shape[:2], dtype=segs_dtype(len(boxes)))
        if not case.is_3d:
            embedding, new_hw = self._encode(image)
            for label, box in enumerate(boxes, start=1):
                segs[self._mask(embedding, box_to_model(box, image.shape[:2]), new_hw, image.shape[:2])] = label
            return segs
        depth, hw = image.shape[0], image.shape[1:]
        for label, (x0, y0, z0, x1, y1, z1) in enumerate(boxes, start=1):
            middle = box_to_model(np.array([x0, y0, x1, y1]), hw)
            z_mid, walk = propagation_walk(z0, z1, depth)
            own = np.zeros(image.shape, np.uint8)
            for z, previous in walk:
                prompt = middle if z == z_mid else mask_to_box(own[previous])
                embedding, new_hw = self._encode(image[z])
                own[z][self._mask(embedding, middle if prompt is None else prompt, new_hw, hw)] = min(label, 255)
            segs[own > 0] = label
        return segs
