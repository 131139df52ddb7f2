"""Which network a run trains: the real Rep-MedSAM, or a tiny stand-in with the same interface for tests
and smoke runs (same classes, a few narrow blocks, 32-wide embeddings; seconds per step instead of tens)."""

from __future__ import annotations

import torch

from ..model import MaskDecoder, PromptEncoder, RepMedSAM, RepViT, build_rep_medsam

__all__ = ["ARCHS", "build_model"]

ARCHS = ("rep_medsam", "tiny")

# stride 2 twice: 256 -> 64, as the real encoder's output grid
_TINY_BLOCKS = [(8, 16, 2, True), (16, 16, 1, False), (16, 32, 2, False)]


def build_model(arch: str = "rep_medsam", seed: int | None = None) -> RepMedSAM:
    """A freshly initialised model (train mode). `seed` makes the initialisation reproducible."""
    if seed is not None:
        torch.manual_seed(seed)
    if arch == "rep_medsam":
        model = build_rep_medsam()
    elif arch == "tiny":
        model = RepMedSAM(RepViT(_TINY_BLOCKS, embed_dim=32), MaskDecoder(transformer_dim=32, iou_head_hidden_dim=32),
                          PromptEncoder(embed_dim=32))
    else:
        raise ValueError(f"arch {arch!r}: expected one of {', '.join(ARCHS)}")
    return model.train()
