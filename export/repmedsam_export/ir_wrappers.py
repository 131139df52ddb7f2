"""The two graphs we export: the reparameterized encoder and a box decoder with the prompt encoder folded in."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .model import RepMedSAM
from .model.mask_decoder import MaskDecoder


class FewQueryAttention(nn.Module):
    """An Attention whose few queries (the prompt tokens) attend to many keys (the image), reassociated.

    scores = q_h (k W_k,h + b_k,h)^T = (q_h W_k,h) k^T + a per-query constant that softmax cancels, and
    softmax(.) (v W_v,h + b_v,h) = (softmax(.) v) W_v,h + b_v,h: the image tokens are never projected, which
    costs 2 x (4096 x 256 x 128) multiply-adds per box; the two products with the image cost 2 x (4096 x 256 x 56).
    """

    def __init__(self, attention) -> None:
        super().__init__()
        self.heads, self.scale = attention.num_heads, attention.sqrt_head_dim
        self.q_proj, self.out_proj = attention.q_proj, attention.out_proj
        with torch.no_grad():
            w_v, b_v = _per_head(attention.v_proj, self.heads)
            self.register_buffer("w_k", _per_head(attention.k_proj, self.heads)[0].clone())  # (H, d, C)
            self.register_buffer("w_v_t", w_v.transpose(1, 2).clone())  # (H, C, d)
            self.register_buffer("b_v", b_v.clone())  # (H, 1, d)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, t, _ = q.shape
        q = self.q_proj(q).reshape(b, t, self.heads, -1).transpose(1, 2)  # (B, H, T, d)
        q = (q @ self.w_k).reshape(b, self.heads * t, -1)  # (B, H*T, C)
        attn = torch.softmax(q @ k.transpose(1, 2) / self.scale, dim=-1)  # (B, H*T, N)
        out = (attn @ v).reshape(b, self.heads, t, -1) @ self.w_v_t + self.b_v  # (B, H, T, d)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1))


class ManyQueryAttention(nn.Module):
    """An Attention whose many queries (the image) attend to few keys (the prompt tokens), reassociated.

    scores = (x W_q,h + b_q,h) k_h^T = x (W_q,h k_h^T) + b_q,h k_h^T, and the output projection is moved onto
    the few values: sum_h softmax_h(.) (v_h W_out,h). All heads go in one product each way, (N x C) @ (C x H*T)
    and (N x H*T) @ (H*T x C), instead of projecting the N image tokens in and out.
    """

    def __init__(self, attention) -> None:
        super().__init__()
        self.heads, self.scale = attention.num_heads, attention.sqrt_head_dim
        self.k_proj, self.v_proj = attention.k_proj, attention.v_proj
        with torch.no_grad():
            w_q, b_q = _per_head(attention.q_proj, self.heads)
            self.register_buffer("w_q_t", w_q.transpose(1, 2).clone())  # (H, C, d)
            self.register_buffer("b_q", b_q.clone())  # (H, 1, d)
            out = attention.out_proj
            self.register_buffer("w_out", out.weight.t().reshape(self.heads, -1, out.out_features).clone())  # (H, d, C)
            self.register_buffer("b_out", out.bias.detach().clone())

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, t, _ = k.shape
        k = self.k_proj(k).reshape(b, t, self.heads, -1).transpose(1, 2)  # (B, H, T, d)
        v = self.v_proj(v).reshape(b, t, self.heads, -1).transpose(1, 2)
        m = (self.w_q_t @ k.transpose(2, 3)).permute(0, 2, 1, 3).reshape(b, -1, self.heads * t)  # (B, C, H*T)
        bias = (self.b_q @ k.transpose(2, 3)).reshape(b, 1, self.heads * t)
        scores = ((q @ m + bias) / self.scale).reshape(b, -1, self.heads, t)  # (B, N, H, T)
        attn = torch.softmax(scores, dim=-1).reshape(b, -1, self.heads * t)
        return attn @ (v @ self.w_out).reshape(b, self.heads * t, -1) + self.b_out  # (B, N, C)


class TokenMajorUpscaler(nn.Module):
    """The decoder's output upscaling and mask-token product, computed without leaving token-major layout.

    SAM's upscaling (ConvTranspose 2x2/2, LayerNorm2d, GELU, ConvTranspose 2x2/2, GELU) never mixes pixels: each
    of the 64x64 embedding tokens becomes its own 4x4 block of the 256x256 mask. So both transposed convolutions
    are per-token linear layers, the channel LayerNorm is a LayerNorm over the last axis, and only the final
    one-channel mask is rearranged into image order. Same arithmetic as the official layout, without the
    NCHW<->blocked reorders and slow deconvolutions it costs OpenVINO (and only mask token 0 is computed).
    """

    def __init__(self, decoder: MaskDecoder) -> None:
        super().__init__()
        up1, norm, _, up2, _ = decoder.output_upscaling
        self.norm_eps = norm.eps
        with torch.no_grad():  # ConvTranspose weight (in, out, dy, dx) -> linear (in -> [dy, dx, out])
            self.register_buffer("w1", up1.weight.permute(0, 2, 3, 1).reshape(up1.in_channels, -1).clone())
            self.register_buffer("b1", up1.bias.repeat(4).clone())
            self.register_buffer("w2", up2.weight.permute(0, 2, 3, 1).reshape(up2.in_channels, -1).clone())
            self.register_buffer("b2", up2.bias.repeat(4).clone())
            self.register_buffer("norm_weight", norm.weight.detach().clone())
            self.register_buffer("norm_bias", norm.bias.detach().clone())
        self.hypernetwork = decoder.output_hypernetworks_mlps[0]

    def forward(self, keys: torch.Tensor, mask_token: torch.Tensor, grid: int) -> torch.Tensor:
        """keys (B, grid*grid, C) token-major, mask_token (B, C) -> logits (B, 4*grid, 4*grid)."""
        b = keys.shape[0]
        x = (keys @ self.w1 + self.b1).reshape(b, grid * grid * 4, -1)  # token, (dy1, dx1), channel
        u = x.mean(-1, keepdim=True)
        s = (x - u).pow(2).mean(-1, keepdim=True)
        x = F.gelu(self.norm_weight * ((x - u) / torch.sqrt(s + self.norm_eps)) + self.norm_bias)
        x = F.gelu(x @ self.w2 + self.b2).reshape(b, grid * grid * 16, -1)  # ..., (dy2, dx2), channel
        masks = x @ self.hypernetwork(mask_token).unsqueeze(-1)  # (B, pixels, 1)
        # (y, x, dy1, dx1, dy2, dx2) -> rows y*4 + dy1*2 + dy2, columns x*4 + dx1*2 + dx2
        masks = masks.reshape(b, grid, grid, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6)
        return masks.reshape(b, 4 * grid, 4 * grid)


class BoxDecoder(nn.Module):
    """embedding (1, 256, 64, 64) + boxes (K, 4) model-space XYXY -> low_res_logits (K, 256, 256), iou (K,).

    The box count K stays dynamic; the embedding is broadcast inside the graph, never passed once per box.
    The dense positional encoding and the "no mask" prompt are constants of the checkpoint.
    """

    def __init__(self, model: RepMedSAM) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = _reassociated(model.mask_decoder)
        self.upscaler = TokenMajorUpscaler(model.mask_decoder)
        with torch.no_grad():
            self.register_buffer("image_pe", model.prompt_encoder.get_dense_pe().clone())
            self.register_buffer("no_mask", model.prompt_encoder.dense_no_mask()[:, :, :1, :1].clone())

    def forward(self, embedding: torch.Tensor, boxes: torch.Tensor):
        sparse = self.prompt_encoder.embed_boxes(boxes)
        hs, keys = self.mask_decoder.attend(embedding, self.image_pe, sparse, self.no_mask)
        logits = self.upscaler(keys, hs[:, 1, :], embedding.shape[-1])
        return logits, self.mask_decoder.iou_prediction_head(hs[:, 0, :])[:, 0]


def _per_head(linear: nn.Linear, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A projection C -> H*d as per-head weights (H, d, C) and biases (H, 1, d)."""
    return linear.weight.reshape(heads, -1, linear.in_features), linear.bias.reshape(heads, 1, -1)


def _reassociated(decoder: MaskDecoder) -> MaskDecoder:
    """A copy of the decoder whose box-dependent image attention is reassociated (same arithmetic, fewer
    products). Layer 0's token-to-image attention keeps its projections: its keys are the box-independent
    embedding, projected once per call for all boxes."""
    decoder = copy.deepcopy(decoder)
    transformer = decoder.transformer
    for i, layer in enumerate(transformer.layers):
        if i > 0:
            layer.cross_attn_token_to_image = FewQueryAttention(layer.cross_attn_token_to_image)
        layer.cross_attn_image_to_token = ManyQueryAttention(layer.cross_attn_image_to_token)
    transformer.final_attn_token_to_image = FewQueryAttention(transformer.final_attn_token_to_image)
    return decoder
