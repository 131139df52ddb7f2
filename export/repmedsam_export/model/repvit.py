"""RepViT-M1.0 image encoder as used by Rep-MedSAM, with structural reparameterization (`fuse`).

Input (B, 3, 256, 256) float in [0, 1]; output (B, 256, 64, 64). Module names follow the official
state_dict (`../shared/spec/state_dict_unfused.tsv`); after `fuse()` the tree matches
`module_tree_fused_encoder.txt`.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import LayerNorm2d

# (in channels, out channels, stride, squeeze-excite) of blocks features.1 .. features.26
REPVIT_M1_0_BLOCKS = (
    [(56, 56, 1, True), (56, 56, 1, False), (56, 56, 1, False), (56, 112, 2, False)]
    + [(112, 112, 1, True), (112, 112, 1, False), (112, 112, 1, False), (112, 224, 2, False)]
    + [(224, 224, 1, i % 2 == 0) for i in range(14)]
    + [(224, 224, 1, False), (224, 448, 1, False), (448, 448, 1, True), (448, 448, 1, False)]
)


def _make_divisible(v: float, divisor: int = 8) -> int:
    """timm's rounding of squeeze-excite widths (round_limit=0)."""
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class Conv2d_BN(nn.Sequential):
    """Bias-free conv `c` followed by BatchNorm `bn`; `fuse()` folds them into one conv with bias."""

    def __init__(self, cin, cout, ks=1, stride=1, pad=0, groups=1) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        c, bn = self.c, self.bn
        scale = bn.weight / (bn.running_var + bn.eps) ** 0.5
        fused = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, groups=c.groups)
        fused.weight.copy_(c.weight * scale[:, None, None, None])
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        return fused


class Residual(nn.Module):
    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)


class RepVGGDW(nn.Module):
    """BN(dw3x3-Conv-BN(x) + dw1x1-conv(x) + x); `fuse()` makes it one depthwise 3x3 conv."""

    def __init__(self, ed: int) -> None:
        super().__init__()
        self.conv = Conv2d_BN(ed, ed, 3, 1, 1, groups=ed)
        self.conv1 = nn.Conv2d(ed, ed, 1, 1, 0, groups=ed)
        self.bn = nn.BatchNorm2d(ed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn((self.conv(x) + self.conv1(x)) + x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv = self.conv.fuse()
        w1 = nn.functional.pad(self.conv1.weight, [1, 1, 1, 1])
        identity = nn.functional.pad(torch.ones_like(self.conv1.weight), [1, 1, 1, 1])
        w = conv.weight + w1 + identity
        b = conv.bias + self.conv1.bias
        bn = self.bn
        scale = bn.weight / (bn.running_var + bn.eps) ** 0.5
        conv.weight.copy_(w * scale[:, None, None, None])
        conv.bias.copy_(bn.bias + (b - bn.running_mean) * scale)
        return conv


class SEModule(nn.Module):
    """timm SqueezeExcite: mean pool, fc1, ReLU, fc2, sigmoid gate (`bn` is an identity)."""

    def __init__(self, channels: int, rd_ratio: float = 0.25) -> None:
        super().__init__()
        rd = _make_divisible(channels * rd_ratio)
        self.fc1 = nn.Conv2d(channels, rd, 1)
        self.bn = nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(self.act(self.bn(self.fc1(s))))
        return x * self.gate(s)


class RepViTBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, use_se: bool) -> None:
        super().__init__()
        se = SEModule(cin) if use_se else nn.Identity()
        if stride == 2:
            self.token_mixer = nn.Sequential(Conv2d_BN(cin, cin, 3, 2, 1, groups=cin), se, Conv2d_BN(cin, cout))
            self.channel_mixer = Residual(nn.Sequential(Conv2d_BN(cout, 2 * cout), nn.GELU(), Conv2d_BN(2 * cout, cout)))
        else:
            self.token_mixer = nn.Sequential(RepVGGDW(cin), se)
            mixer = nn.Sequential(Conv2d_BN(cin, 2 * cin), nn.GELU(), Conv2d_BN(2 * cin, cout))
            self.channel_mixer = Residual(mixer) if cin == cout else mixer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mixer(self.token_mixer(x))


class RepViT(nn.Module):
    def __init__(self, blocks=REPVIT_M1_0_BLOCKS, embed_dim: int = 256) -> None:
        super().__init__()
        c0 = blocks[0][0]
        stem = nn.Sequential(Conv2d_BN(3, c0 // 2, 3, 1, 1), nn.GELU(), Conv2d_BN(c0 // 2, c0, 3, 1, 1))
        self.features = nn.ModuleList([stem] + [RepViTBlock(*cfg) for cfg in blocks])
        c_last = blocks[-1][1]
        self.neck = nn.Sequential(
            nn.Conv2d(c_last, embed_dim, 1, bias=False),
            LayerNorm2d(embed_dim),
            nn.Conv2d(embed_dim, embed_dim, 3, padding=1, bias=False),
            LayerNorm2d(embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for f in self.features:
            x = f(x)
        return self.neck(x)

    def fuse(self) -> "RepViT":
        """Reparameterize in place for inference: every Conv-BN and RepVGGDW becomes one conv."""
        _fuse_children(self)
        return self


def _fuse_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, (Conv2d_BN, RepVGGDW)):
            setattr(module, name, child.fuse())
        else:
            _fuse_children(child)
