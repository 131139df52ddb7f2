"""The distillation teacher: SAM's ViT image encoder (the layout of MedSAM's `medsam_vit_b.pth`), and the
store of its embeddings that the `distill` stage reads.

No teacher is bundled: a user who holds a SAM-layout checkpoint (MedSAM ViT-B; `image_encoder.*` keys, or
the encoder's own keys) runs `repmedsam-ov train embed-teacher CKPT` once. The encoder's hyperparameters
(width, depth, heads, window size, global-attention blocks, input size) are read from the state_dict, so
ViT-B/L/H and the tiny stand-in of the tests all load the same way.

Teacher input: the student's preprocessed 256×256 image (longest side 256, min-max normalised, padded
bottom/right) resized bilinearly to the teacher's input size, with no mean/std normalisation (MedSAM's
inference feeds [0, 1] images). Its 64×64 grid then covers the same pixels as the student's embedding.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repmedsam_ov.atomic import write_bytes_atomic
from repmedsam_ov.errors import InputError, ModelError

from ..checkpoint import file_sha256, torch_load
from ..model.common import LayerNorm2d

__all__ = ["SamViT", "load_teacher", "build_tiny_teacher", "EmbeddingStore", "embed_items"]


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, rel_size: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_size - 1, dim // heads))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_size - 1, dim // heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.heads, h * w, -1).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = _add_rel_pos(attn, q, self.rel_pos_h, self.rel_pos_w, (h, w))
        x = (attn.softmax(dim=-1) @ v).view(b, self.heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(x)


def _rel_pos(size: int, rel: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, device=rel.device)
    return rel[(coords[:, None] - coords[None, :] + size - 1).long()]


def _add_rel_pos(attn, q, rel_h, rel_w, hw):
    """SAM's decomposed relative position bias (query and key grids of the same size)."""
    h, w = hw
    rh, rw = _rel_pos(h, rel_h), _rel_pos(w, rel_w)
    r_q = q.reshape(q.shape[0], h, w, -1)
    bias_h = torch.einsum("bhwc,hkc->bhwk", r_q, rh)
    bias_w = torch.einsum("bhwc,wkc->bhwk", r_q, rw)
    attn = attn.view(q.shape[0], h, w, h, w) + bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]
    return attn.view(q.shape[0], h * w, h * w)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, window: int, grid: int) -> None:
        super().__init__()
        self.window = window  # 0: global attention
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads, window or grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.lin1, self.mlp.lin2 = nn.Linear(dim, mlp_dim), nn.Linear(mlp_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window:
            h, w = x.shape[1:3]
            x, padded = _partition(x, self.window)
            x = _unpartition(self.attn(x), self.window, padded, (h, w))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp.lin2(F.gelu(self.mlp.lin1(self.norm2(x))))


def _partition(x, win):
    b, h, w, c = x.shape
    ph, pw = (win - h % win) % win, (win - w % win) % win
    x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // win, win, wp // win, win, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, win, win, c)
    return x, (hp, wp)


def _unpartition(x, win, padded, hw):
    hp, wp = padded
    b = x.shape[0] // (hp * wp // win // win)
    x = x.view(b, hp // win, wp // win, win, win, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, : hw[0], : hw[1]].contiguous()


class SamViT(nn.Module):
    """SAM's ImageEncoderViT (relative positions on, absolute positions on). Input (B, 3, S, S) in [0, 1]
    with S = img_size; output (B, out_chans, S/patch, S/patch)."""

    def __init__(self, img_size=1024, patch=16, dim=768, depth=12, heads=12, mlp_dim=3072, window=14,
                 global_blocks=(2, 5, 8, 11), out_chans=256) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, dim))
        self.blocks = nn.ModuleList(
            _Block(dim, heads, mlp_dim, 0 if i in global_blocks else window, grid) for i in range(depth))
        self.neck = nn.Sequential(nn.Conv2d(dim, out_chans, 1, bias=False), LayerNorm2d(out_chans),
                                  nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False), LayerNorm2d(out_chans))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))

    @property
    def out_shape(self) -> tuple[int, int, int]:
        grid = self.img_size // self.patch_embed.proj.kernel_size[0]
        return self.neck[0].out_channels, grid, grid

    def embed_batch(self, images_256: np.ndarray) -> np.ndarray:
        device = self.pos_embed.device
        return self.embed(torch.from_numpy(images_256).to(device)).cpu().numpy()

    @torch.no_grad()
    def embed(self, images_256: torch.Tensor) -> torch.Tensor:
        """images_256: (B, 3, 256, 256) preprocessed student inputs -> (B, 256, 64, 64) embeddings."""
        if self.img_size != images_256.shape[-1]:
            images_256 = F.interpolate(images_256, size=(self.img_size, self.img_size), mode="bilinear",
                                       align_corners=False)
        return self(images_256)


def _config_from_state(state: dict[str, torch.Tensor], path) -> dict:
    try:
        dim, _, patch, _ = state["patch_embed.proj.weight"].shape
        grid = state["pos_embed"].shape[1]
        depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
        head_dim = state["blocks.0.attn.rel_pos_h"].shape[1]
        sizes = [(state[f"blocks.{i}.attn.rel_pos_h"].shape[0] + 1) // 2 for i in range(depth)]
        windows = [s for s in sizes if s != grid]
        return dict(img_size=grid * patch, patch=patch, dim=dim, depth=depth, heads=dim // head_dim,
                    mlp_dim=state["blocks.0.mlp.lin1.weight"].shape[0], window=windows[0] if windows else grid,
                    global_blocks=tuple(i for i, s in enumerate(sizes) if s == grid),
                    out_chans=state["neck.0.weight"].shape[0])
    except (KeyError, ValueError) as e:
        raise ModelError(f"{path}: not a SAM-layout ViT image encoder (missing or odd {e}). Expected "
                         "`image_encoder.patch_embed.proj.weight`, `image_encoder.blocks.N.attn.rel_pos_h`, ... "
                         "as in MedSAM's medsam_vit_b.pth.") from None


def load_teacher(path: str | os.PathLike) -> SamViT:
    """A SAM-layout checkpoint (full SAM with `image_encoder.` keys, `{"model": ...}`, or encoder only)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such teacher checkpoint.")
    obj = torch_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: expected a state_dict, found {type(obj).__name__}.")
    if any(k.startswith("image_encoder.") for k in obj):
        obj = {k[len("image_encoder."):]: v for k, v in obj.items() if k.startswith("image_encoder.")}
    teacher = SamViT(**_config_from_state(obj, path))
    try:
        teacher.load_state_dict({k: v.float() for k, v in obj.items()})
    except RuntimeError as e:
        raise ModelError(f"{path}: teacher weights do not fit a SAM ViT ({str(e).splitlines()[0]}).") from None
    teacher.source_sha256 = file_sha256(path)
    return teacher.eval()


def build_tiny_teacher(seed: int = 0, out_chans: int = 256) -> SamViT:
    """A small random SAM-layout encoder (input 256, 4-pixel patches, 2 blocks) for tests and smoke runs."""
    torch.manual_seed(seed)
    teacher = SamViT(img_size=256, patch=4, dim=32, depth=2, heads=2, mlp_dim=64, window=8, global_blocks=(1,),
                     out_chans=out_chans)
    with torch.no_grad():
        for p in teacher.parameters():
            if p.dim() > 1 or p.shape[0] > 256:
                p.normal_(0, 0.05)
    return teacher.eval()


class EmbeddingStore:
    """Teacher embeddings on disk: `embeddings.f16` (N, C, 64, 64) float16 memmap (C = 256 for SAM) +
    `index.json` ({"keys": [...], "done": n, "shape": [N, C, 64, 64], "teacher_sha256": ...}). Rows are
    written in index order, so an interrupted `embed-teacher` continues where it stopped."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        index = self.folder / "index.json"
        if not index.is_file():
            raise InputError(f"{self.folder}: no teacher embeddings (index.json). Make them with "
                             f"`repmedsam-ov train embed-teacher TEACHER.pth --out {self.folder}`; "
                             "no teacher is bundled.")
        self.meta = json.loads(index.read_text())
        self.row = {k: i for i, k in enumerate(self.meta["keys"][: self.meta["done"]])}
        self.data = np.memmap(self.folder / "embeddings.f16", dtype=np.float16, mode="r",
                              shape=tuple(self.meta["shape"]))

    def get(self, key: str) -> np.ndarray:
        if key not in self.row:
            raise InputError(f"{self.folder}: no teacher embedding for {key!r}; rerun embed-teacher on the "
                             "same data and subset.")
        return self.data[self.row[key]]


def embed_items(teacher, source, items, out: str | os.PathLike, batch_size: int = 1, log=None) -> Path:
    """Compute and store the teacher embedding of every item (resuming a partial store of the same keys).

    teacher: anything with `embed_batch(images (B, 3, 256, 256) float32) -> (B, C, 64, 64)`, `out_shape`
    (C, 64, 64) and `source_sha256` — a `SamViT` (torch) or an `OpenVINOTeacher`."""
    from .samples import preprocess

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = [it.key for it in items]
    index = out / "index.json"
    meta = json.loads(index.read_text()) if index.is_file() else None
    sha = getattr(teacher, "source_sha256", None)
    shape = [len(keys), *teacher.out_shape]
    if not meta or meta["keys"] != keys or meta.get("teacher_sha256") != sha or meta["shape"] != shape:
        meta = {"keys": keys, "done": 0, "teacher_sha256": sha, "input": "the student's preprocessed 256 input",
                "dtype": "float16", "shape": shape}
    data = np.memmap(out / "embeddings.f16", dtype=np.float16, mode="r+" if meta["done"] else "w+",
                     shape=tuple(shape))
    for start in range(meta["done"], len(items), batch_size):
        batch = items[start: start + batch_size]
        images = np.stack([preprocess(source.read(it)[0]) for it in batch])
        data[start: start + len(batch)] = teacher.embed_batch(images).astype(np.float16)
        data.flush()
        meta["done"] = start + len(batch)
        _write_json(index, meta)
        if log:
            log(meta["done"], len(items))
    _write_json(index, meta)
    return out


def _write_json(path: Path, obj) -> None:
    write_bytes_atomic(path, json.dumps(obj).encode())
