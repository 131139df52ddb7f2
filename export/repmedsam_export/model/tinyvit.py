"""LiteMedSAM's TinyViT-5M image encoder, written from its published definition (MobileSAM's TinyViT as
modified by LiteMedSAM: a 1x1, stride-1 patch embedding, so the first stage runs at the full 256x256
input). Module names follow the `image_encoder.*` entries of `lite_medsam.pth`; loads strictly.

Input (B, 3, 256, 256) float in [0, 1]; output (B, 256, 64, 64), the same contract as `RepViT`.
Stages (input 256): MBConv x2 at 64 ch, 256x256 -> merge to 128 ch, 128x128 -> 2 attention blocks
(window 7) -> merge to 160 ch, 64x64 -> 6 blocks (window 14) -> merge to 320 ch (stride 1) -> 2 blocks
(window 7) -> neck.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d
from .repvit import Conv2d_BN

__all__ = ["TinyViT"]

# (width, depth, heads, window) per stage; stage 0 is convolutional (MBConv, no heads or window)
TINYVIT_5M_STAGES = ((64, 2, 0, 0), (128, 2, 4, 7), (160, 6, 5, 14), (320, 2, 10, 7))


class MBConv(nn.Module):
    """1x1 expand (x4), depthwise 3x3, 1x1 project; GELU after the residual sum."""

    def __init__(self, dim: int, expand: int = 4) -> None:
        super().__init__()
        hidden = dim * expand
        self.conv1 = Conv2d_BN(dim, hidden)
        self.conv2 = Conv2d_BN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = Conv2d_BN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))
        return F.gelu(x + y)


class PatchMerging(nn.Module):
    """1x1 to the next width, depthwise 3x3 (stride 2, or 1 into the last stage), 1x1; NCHW in and out."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = Conv2d_BN(dim, out_dim)
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


def _offset_index(window: int) -> torch.Tensor:
    """(N, N) index into the per-head bias table: one entry per distinct (|dy|, |dx|) between two positions
    of a window, numbered in order of first appearance (the checkpoint's table layout)."""
    points = list(itertools.product(range(window), range(window)))
    ids: dict[tuple[int, int], int] = {}
    idx = [ids.setdefault((abs(a[0] - b[0]), abs(a[1] - b[1])), len(ids)) for a in points for b in points]
    return torch.tensor(idx).view(len(points), len(points))


class Attention(nn.Module):
    """Pre-norm multi-head self-attention inside a window with a learned bias per head and offset.
    qkv is laid out per head as [q (d), k (d), v (d)]."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        index = _offset_index(window)
        self.attention_biases = nn.Parameter(torch.zeros(heads, int(index.max()) + 1))
        self.register_buffer("bias_index", index, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C)
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.heads, 3 * self.head_dim).permute(0, 2, 1, 3)
        q, k, v = qkv.split(self.head_dim, dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5 + self.attention_biases[:, self.bias_index]
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention (zero-padded to whole windows; the padding takes part as keys, as in the original),
    residual; depthwise 3x3 Conv-BN; residual MLP. NCHW in and out."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.window = window
        self.attn = Attention(dim, heads, window)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.local_conv = Conv2d_BN(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        win = self.window
        tokens = x.permute(0, 2, 3, 1)
        pad_b, pad_r = -h % win, -w % win
        padded = F.pad(tokens, (0, 0, 0, pad_r, 0, pad_b))
        nh, nw = (h + pad_b) // win, (w + pad_r) // win
        windows = padded.reshape(b, nh, win, nw, win, c).transpose(2, 3).reshape(b * nh * nw, win * win, c)
        attended = self.attn(windows).view(b, nh, nw, win, win, c).transpose(2, 3)
        attended = attended.reshape(b, nh * win, nw * win, c)[:, :h, :w]
        x = (tokens + attended).permute(0, 3, 1, 2)
        tokens = self.local_conv(x).permute(0, 2, 3, 1)
        tokens = tokens + self.mlp(tokens)
        return tokens.permute(0, 3, 1, 2)


class _Stage(nn.Module):
    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    def __init__(self, stages=TINYVIT_5M_STAGES, in_chans: int = 3, out_chans: int = 256) -> None:
        super().__init__()
        width0 = stages[0][0]
        self.patch_embed = nn.Module()
        self.patch_embed.seq = nn.Sequential(Conv2d_BN(in_chans, width0 // 2), nn.GELU(), Conv2d_BN(width0 // 2, width0))
        layers = []
        for i, (dim, depth, heads, window) in enumerate(stages):
            if i == 0:
                blocks = [MBConv(dim) for _ in range(depth)]
            else:
                blocks = [TinyViTBlock(dim, heads, window) for _ in range(depth)]
            down = None
            if i + 1 < len(stages):
                # the merge into the last stage keeps the resolution (64x64 embeddings from a 256 input)
                down = PatchMerging(dim, stages[i + 1][0], stride=1 if i + 2 == len(stages) else 2)
            layers.append(_Stage(blocks, down))
        self.layers = nn.ModuleList(layers)
        last = stages[-1][0]
        self.neck = nn.Sequential(nn.Conv2d(last, out_chans, 1, bias=False), LayerNorm2d(out_chans),
                                  nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False), LayerNorm2d(out_chans))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.seq(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)

    @torch.no_grad()
    def fuse(self) -> "TinyViT":
        """Fold every Conv-BN into one conv with bias, in place (inference only)."""
        for module in list(self.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, Conv2d_BN):
                    setattr(module, name, child.fuse())
        return self
