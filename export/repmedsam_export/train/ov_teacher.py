"""The distillation teacher run by OpenVINO: LiteMedSAM's TinyViT encoder (or any exported model folder's
encoder), bf16 on CPUs with native bf16 and f32 elsewhere — about 3x faster than the same encoder in torch
here, which is what makes on-the-fly targets for augmented views affordable.

`open_teacher(PATH)` accepts a LiteMedSAM checkpoint (its encoder is exported once to a cache folder next
to it, keyed by the checkpoint's sha256; on a CUDA device, or when it holds the encoder alone, it runs in
torch instead), a model folder
(encoder.xml), or a SAM-layout ViT checkpoint (run in torch, as before).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from repmedsam_ov.errors import ModelError

__all__ = ["OpenVINOTeacher", "MaskTeacher", "TorchTeacher", "open_teacher", "open_mask_teacher"]


class OpenVINOTeacher:
    """encoder.xml of a model folder compiled once; `embed_batch` maps (B, 3, 256, 256) float32 images to
    (B, C, 64, 64) float32 embeddings (C = 256 for LiteMedSAM)."""

    def __init__(self, model_dir: str | os.PathLike, threads: int | None = None, precision: str = "auto") -> None:
        import openvino as ov

        from repmedsam_ov._core import native_bf16_units

        xml = Path(model_dir) / "encoder.xml"
        if not xml.is_file():
            raise ModelError(f"{model_dir}: no encoder.xml; expected a model folder made by `repmedsam-ov export`.")
        self.core = core = ov.Core()
        model = core.read_model(xml)
        key = ["model_info", "checkpoint_sha256"]
        self.source_sha256 = model.get_rt_info(key).astype(str) if model.has_rt_info(key) else None
        if precision == "auto":
            precision = "bf16" if native_bf16_units() else "f32"
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.precision = precision
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.out_shape = tuple(d.get_length() for d in list(model.output(0).get_partial_shape())[1:])

    def embed_batch(self, images: np.ndarray) -> np.ndarray:
        outs = [self.request.infer({0: np.ascontiguousarray(images[i: i + 1], dtype=np.float32)})[0].copy()
                for i in range(len(images))]
        return np.concatenate(outs)


class MaskTeacher(OpenVINOTeacher):
    """A whole model folder as a teacher of masks: `mask_logits` maps (B, 3, 256, 256) images and (B, 4) boxes
    (model space) to the decoder's (B, 1, 256, 256) float32 logits, one box per image. The decoder runs in f32."""

    def __init__(self, model_dir: str | os.PathLike, threads: int | None = None, precision: str = "auto") -> None:
        super().__init__(model_dir, threads, precision)
        xml = Path(model_dir) / "decoder.xml"
        if not xml.is_file():
            raise ModelError(f"{model_dir}: no decoder.xml; a mask teacher needs a whole model folder.")
        config = {"INFERENCE_PRECISION_HINT": "f32"} | ({"INFERENCE_NUM_THREADS": threads} if threads else {})
        self.decoder = self.core.compile_model(xml, "CPU", config).create_infer_request()

    def mask_logits(self, images: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        embeddings = self.embed_batch(images)
        outs = [self.decoder.infer({"embedding": embeddings[i: i + 1],
                                    "boxes": np.ascontiguousarray(boxes[i: i + 1], dtype=np.float32)})
                ["low_res_logits"].copy() for i in range(len(images))]
        return np.stack(outs)


class TorchTeacher:
    """LiteMedSAM's TinyViT in torch on a CUDA device (bf16 autocast), with OpenVINOTeacher's interface and
    `embed_tensor`, which the trainer uses to target a whole batch where it already lies on the device."""

    def __init__(self, checkpoint: Path, device: str) -> None:
        from ..checkpoint import file_sha256, load_state_dict
        from ..model import build_lite_medsam

        # only the encoder is needed (and, on the GPU machine, all that travels: train/device.py)
        prefix = "image_encoder."
        state = {k[len(prefix):]: v.float() for k, v in load_state_dict(checkpoint).items() if k.startswith(prefix)}
        self.encoder = build_lite_medsam().image_encoder
        try:
            self.encoder.load_state_dict(state)
        except RuntimeError as e:
            raise ModelError(f"{checkpoint}: not a LiteMedSAM encoder ({str(e).splitlines()[0][:300]}).") from None
        self.encoder.to(device).eval()
        self.device, self.out_shape, self.source_sha256 = device, (256, 64, 64), file_sha256(checkpoint)

    def embed_tensor(self, images):
        """(B, 3, 256, 256) float tensor on the teacher's device -> (B, 256, 64, 64) float32 there."""
        import torch

        with torch.no_grad(), torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16):
            return self.encoder(images).float()

    def embed_batch(self, images: np.ndarray) -> np.ndarray:
        import torch

        return self.embed_tensor(torch.from_numpy(images).to(self.device)).cpu().numpy()


def _exported_encoder(checkpoint: Path) -> Path:
    """A model folder for a LiteMedSAM checkpoint, exported once into a cache beside the checkpoint."""
    from repmedsam_ov.litemedsam_weights import ir_folder

    from ..checkpoint import file_sha256
    from ..to_ir import export_model

    folder = ir_folder(checkpoint, file_sha256(checkpoint))
    if not (folder / "encoder.xml").is_file():
        export_model(checkpoint, folder)
    return folder


def open_mask_teacher(path: str | os.PathLike, threads: int | None = None) -> MaskTeacher:
    """A MaskTeacher from a model folder or a LiteMedSAM checkpoint (exported once, as for open_teacher)."""
    path = Path(path)
    if path.is_dir():
        return MaskTeacher(path, threads)
    if not path.is_file():
        raise ModelError(f"{path}: no such teacher checkpoint or model folder.")
    from ..checkpoint import detect_arch, load_state_dict

    if detect_arch(load_state_dict(path)) != "litemedsam":
        raise ModelError(f"{path}: a mask teacher must be a LiteMedSAM checkpoint or a model folder.")
    return MaskTeacher(_exported_encoder(path), threads)


def open_teacher(path: str | os.PathLike, threads: int | None = None, device: str = "cpu"):
    """A teacher with `embed_batch`, `out_shape` and `source_sha256` (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        return OpenVINOTeacher(path, threads)
    if not path.is_file():
        raise ModelError(f"{path}: no such teacher checkpoint or model folder.")
    from ..checkpoint import detect_arch, load_state_dict

    state = load_state_dict(path)
    if detect_arch(state) == "litemedsam":
        # a GPU runs the torch encoder far faster than OpenVINO runs it on the host CPU; an encoder alone
        # (what travels to the GPU machine) cannot be exported to a model folder
        if device == "cuda" or not any(k.startswith("mask_decoder.") for k in state):
            return TorchTeacher(path, device)
        return OpenVINOTeacher(_exported_encoder(path), threads)
    from .teacher import load_teacher

    return load_teacher(path).to(device)
