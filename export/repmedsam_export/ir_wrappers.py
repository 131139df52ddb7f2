"""The two graphs we export: the reparameterized encoder and a box decoder with the prompt encoder folded in."""

from __future__ import annotations

import torch
from torch import nn

from .model import RepMedSAM


class BoxDecoder(nn.Module):
    """embedding (1, 256, 64, 64) + boxes (K, 4) model-space XYXY -> low_res_logits (K, 256, 256), iou (K,).

    The box count K stays dynamic; the embedding is broadcast inside the graph, never passed once per box.
    The dense positional encoding and the "no mask" prompt are constants of the checkpoint.
    """

    def __init__(self, model: RepMedSAM) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        with torch.no_grad():
            self.register_buffer("image_pe", model.prompt_encoder.get_dense_pe().clone())
            self.register_buffer("no_mask", model.prompt_encoder.dense_no_mask()[:, :, :1, :1].clone())

    def forward(self, embedding: torch.Tensor, boxes: torch.Tensor):
        sparse = self.prompt_encoder.embed_boxes(boxes)
        logits, iou = self.mask_decoder(embedding, self.image_pe, sparse, self.no_mask, multimask_output=False)
        return logits[:, 0], iou[:, 0]
