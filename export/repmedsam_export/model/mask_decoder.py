"""SAM's mask decoder with LiteMedSAM's configuration (3 multimask outputs + 1, IoU head depth 3)."""

from __future__ import annotations

import torch
from torch import nn

from .common import MLP, LayerNorm2d
from .transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    def __init__(self, transformer_dim: int = 256, num_multimask_outputs: int = 3,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(embedding_dim=transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                multimask_output: bool = False):
        """image_embeddings: (1 or B, C, 64, 64); sparse: (B, T, C); dense: (B, C, 64, 64).

        Returns low-res mask logits (B, 1 or 3, 256, 256) and IoU predictions (B, 1 or 3).
        """
        masks, iou_pred = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                             dense_prompt_embeddings)
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou_pred[:, sl]

    def predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings):
        hs, src = self.attend(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings)
        b, (h, w) = hs.shape[0], image_embeddings.shape[-2:]
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, -1, h, w))
        mask_tokens_out = hs[:, 1:1 + self.num_mask_tokens, :]
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        _, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return masks, self.iou_prediction_head(hs[:, 0, :])

    def attend(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings):
        """The two-way transformer on [IoU token, mask tokens, prompt tokens] and the image: returns the output
        tokens (B, 5 + T, C) and the updated image embedding, token-major (B, h*w, C)."""
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)
        # Broadcast, never expand: a batch-1 embedding with a batch-1 dense prompt (the exported box decoder)
        # stays batch 1 until the transformer first updates the keys, so the box-independent projections
        # run once per call instead of once per box. No data-dependent branch: traced exports keep K dynamic.
        src = image_embeddings + dense_prompt_embeddings
        return self.transformer(src, image_pe, tokens)
