"""Loading official `rep_medsam.pth` checkpoints (plain state_dict or `{"model": state_dict}`, fp16 or fp32),
and LiteMedSAM's `lite_medsam.pth` (the same decoder with a TinyViT encoder; told apart by its keys)."""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path

import torch

from repmedsam_ov.errors import ModelError

from .model import BUILDERS, RepMedSAM

__all__ = ["load_checkpoint", "load_state_dict", "file_sha256", "torch_load", "detect_arch", "ARCH_NAMES"]

# readable names, for messages and model cards
ARCH_NAMES = {"rep_medsam": "Rep-MedSAM", "litemedsam": "LiteMedSAM"}


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def torch_load(path: Path):
    """torch.load(path, weights_only=True) to the CPU; on failure a one-line ModelError saying what the file holds
    instead (torch's own text, e.g. an invalid load key, names no file format)."""
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning would precede our one line
            warnings.filterwarnings("ignore", "Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load fails in many ways (KeyError, UnpicklingError, ...) on foreign files
        raise ModelError(f"{path}: not a PyTorch checkpoint: expected a zip archive or legacy pickle written by "
                         f"torch.save, found {_looks_like(path, e)}.") from None


def _looks_like(path: Path, error: Exception) -> str:
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "an empty file"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile:
            return f"a damaged zip archive of {path.stat().st_size} bytes"
        if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            more = ", ..." if len(names) > 3 else ""
            return f"a zip archive without data.pkl (holding {', '.join(names[:3]) or 'nothing'}{more})"
        return f"a torch.save archive that loads only with unsafe pickling ({_reason(error)})"
    if head[:1] == b"\x80":  # pickle protocol 2+: torch.save's legacy format, or another program's pickle
        return f"a pickle that torch.load cannot read ({_reason(error)})"
    text = head.decode("utf-8", "replace")
    if "\x00" not in text and sum(c.isprintable() or c in "\t\r\n" for c in text) >= 0.9 * len(text):
        return f"text ({text.strip().splitlines()[0][:40]!r})" if text.strip() else "blank text"
    return f"{path.stat().st_size} bytes of binary data starting {head[:8].hex(' ')}"


def _reason(error: Exception) -> str:
    """The informative part of torch.load's message: what its weights-only unpickler met (the rest is advice)."""
    text = str(error).split("WeightsUnpickler error:")[-1]
    line = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    return line.split(". Please")[0][:150]


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat state_dict. Raises ModelError with the path on any failure."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file.")
    obj = torch_load(path)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path}: expected a state_dict or {{'model': state_dict}}, found {type(obj).__name__}.")
    return obj


def detect_arch(state: dict[str, torch.Tensor]) -> str:
    """"rep_medsam" (RepViT `image_encoder.features.*`) or "litemedsam" (TinyViT `image_encoder.layers.*`);
    Rep-MedSAM when neither is recognisable, so its strict load names what is missing."""
    if any(k.startswith("image_encoder.layers.") for k in state):
        return "litemedsam"
    return "rep_medsam"


def load_checkpoint(path: str | os.PathLike, strict: bool = True, arch: str | None = None) -> RepMedSAM:
    """Build the model (unfused, eval mode, float32) and load a checkpoint into it.

    arch: "rep_medsam" or "litemedsam"; None reads it from the checkpoint's keys. The result carries it as
    `model.arch`. A mismatch raises one ModelError naming the path and up to five missing keys, unexpected
    keys and shape mismatches each.
    """
    state = load_state_dict(path)
    arch = arch or detect_arch(state)
    if arch not in BUILDERS:
        raise ModelError(f"{path}: unknown architecture {arch!r} (expected one of {', '.join(BUILDERS)}).")
    model = BUILDERS[arch]()
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
        raise ModelError(f"{path}: not a {ARCH_NAMES[arch]} checkpoint: " + "; ".join(problems) + ".")
    converted = {k: v.to(expected[k].dtype) for k, v in state.items() if k in expected}
    model.load_state_dict(converted, strict=strict)
    model.arch = arch
    return model.eval()


def _listing(what: str, items: list[str]) -> str:
    more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
    return f"{len(items)} {what}: " + ", ".join(items[:5]) + more
