"""Loading official `rep_medsam.pth` checkpoints (plain state_dict or `{"model": state_dict}`, fp16 or fp32)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from repmedsam_ov.errors import ModelError

from .model import RepMedSAM, build_rep_medsam

__all__ = ["load_checkpoint", "load_state_dict", "file_sha256"]


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat state_dict. Raises ModelError with the path on any failure."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load fails in many ways (KeyError, UnpicklingError, ...) on foreign files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: not a PyTorch checkpoint ({first[:200]}).") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path}: expected a state_dict or {{'model': state_dict}}, found {type(obj).__name__}.")
    return obj


def load_checkpoint(path: str | os.PathLike, strict: bool = True) -> RepMedSAM:
    """Build Rep-MedSAM (unfused, eval mode, float32) and load a checkpoint into it.

    A mismatch raises one ModelError naming the path and up to five missing keys, unexpected keys and
    shape mismatches each.
    """
    state = load_state_dict(path)
    model = build_rep_medsam()
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and state[k].shape != v.shape]
    problems = []
    if strict and missing:
        problems.append(_listing("missing keys", missing))
    if strict and unexpected:
        problems.append(_listing("unexpected keys", unexpected))
    if mismatched:
        problems.append(_listing("shape mismatches (checkpoint != model)", mismatched))
    if problems:
        raise ModelError(f"{path}: not a Rep-MedSAM checkpoint: " + "; ".join(problems) + ".")
    converted = {k: v.to(expected[k].dtype) for k, v in state.items() if k in expected}
    model.load_state_dict(converted, strict=strict)
    return model.eval()


def _listing(what: str, items: list[str]) -> str:
    more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
    return f"{len(items)} {what}: " + ", ".join(items[:5]) + more
