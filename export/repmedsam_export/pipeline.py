"""The reference pipeline in PyTorch: the published CVPR24 inference script's semantics, written plainly.

This is what "the same model" means (ARCHITECTURE.md §2); the C++ runtime is tested against the golden
outputs that this pipeline also reproduces. Slow by design: one decoder call per box, like the original.
"""

from __future__ import annotations

import numpy as np
import torch

from repmedsam_ov import reference
from repmedsam_ov.io import Case, segs_dtype
from repmedsam_ov.reference import box_to_model, mask_to_box, propagation_walk

from .checkpoint import load_checkpoint
from .model import RepMedSAM

__all__ = ["ReferencePipeline", "reference_segmenter", "preprocess", "box_to_model", "mask_to_box"]


def preprocess(image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 (H, W) or (H, W, 3) -> ((1, 3, 256, 256) float32 tensor in [0, 1], (new_h, new_w) before padding)."""
    array, new_hw = reference.preprocess(image)
    return torch.from_numpy(array), new_hw


class ReferencePipeline:
    """Segments challenge cases with a torch Rep-MedSAM; optionally records every decoder prompt.

    trace: after a call, `self.trace` lists the model-space boxes handed to the decoder, in call order.
    """

    def __init__(self, model: RepMedSAM) -> None:
        self.model = model.eval()
        self.trace: list[list[int]] = []

    @torch.no_grad()
    def _encode(self, image: np.ndarray):
        tensor, new_hw = preprocess(image)
        return self.model.image_encoder(tensor), new_hw

    @torch.no_grad()
    def _decode(self, embedding: torch.Tensor, box256: np.ndarray, new_hw, original_hw) -> np.ndarray:
        self.trace.append([int(v) for v in box256])
        boxes = torch.as_tensor(box256[None, None, :], dtype=torch.float32)
        logits, _ = self.model.decode(embedding, boxes)
        probs = torch.sigmoid(RepMedSAM.postprocess_masks(logits, new_hw, original_hw))
        return (probs[0, 0].numpy() > 0.5).astype(np.uint8)

    def segment_2d(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """image: uint8 (H, W, 3) or (H, W); boxes: (N, 4) XYXY pixels -> labels (H, W), box i painted i+1."""
        self.trace = []
        hw = image.shape[:2]
        embedding, new_hw = self._encode(image)
        segs = np.zeros(hw, dtype=segs_dtype(len(boxes)))
        for label, box in enumerate(boxes, start=1):
            mask = self._decode(embedding, box_to_model(box, hw), new_hw, hw)
            segs[mask > 0] = label
        return segs

    def segment_3d(self, volume: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """volume: uint8 (D, H, W); boxes: (N, 6) [x_min, y_min, z_min, x_max, y_max, z_max] voxels, z_max
        inclusive -> labels (D, H, W), object i painted i+1 (later objects overwrite earlier ones)."""
        self.trace = []
        depth, hw = volume.shape[0], volume.shape[1:]
        embeddings: dict[int, tuple] = {}

        def embedding_of(z):
            if z not in embeddings:
                embeddings[z] = self._encode(volume[z])
            return embeddings[z]

        segs = np.zeros(volume.shape, dtype=segs_dtype(len(boxes)))
        for label, box in enumerate(boxes, start=1):
            x_min, y_min, z_min, x_max, y_max, z_max = box
            middle_box = box_to_model(np.array([x_min, y_min, x_max, y_max]), hw)
            z_mid, walk = propagation_walk(z_min, z_max, depth)
            # the object's own masks, holding its label value: the resize of a thin mask depends on it
            own = np.zeros(volume.shape, dtype=np.uint8)
            for z, previous in walk:
                prompt = middle_box if z == z_mid else mask_to_box(own[previous])
                if prompt is None:
                    prompt = middle_box
                embedding, new_hw = embedding_of(z)
                mask = self._decode(embedding, prompt, new_hw, hw)
                own[z, mask > 0] = min(label, 255)
            segs[own > 0] = label
        return segs

    def segment(self, case: Case) -> np.ndarray:
        """Segment a validated case from `repmedsam_ov.io.load_case`: 2D or 3D by the shape of its boxes."""
        if case.is_3d:
            return self.segment_3d(case.imgs, case.boxes)
        return self.segment_2d(case.imgs, case.boxes)


def reference_segmenter(checkpoint, threads: int | None = None):
    """The torch backend of `repmedsam-ov infer` and `bench`: a callable case -> labels for a checkpoint file."""
    if threads:
        torch.set_num_threads(threads)
    return ReferencePipeline(load_checkpoint(checkpoint)).segment
