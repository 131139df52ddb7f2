"""Where training keeps its state, and how it is written and read back.

A state folder (default `$XDG_CACHE_HOME/repmedsam-ov/train/<stage>`, i.e. `~/.cache/repmedsam-ov/train/
<stage>`; never inside a repository) holds:
- `state.pt`   everything needed to resume exactly: model, optimizer, scheduler, epoch, samples consumed
               in the epoch, global step, best score, torch RNG states and the run's settings;
- `best.pth`   `{"model": state_dict, "epoch", "score", ...}` — loadable by `load_checkpoint` and
               `repmedsam-ov export`;
- `log.jsonl`  one JSON object per logged step, epoch and validation;
- `data-cache.npz` when `--cache` is given.
Files are written to a temporary name and renamed, so an interrupted save never leaves a broken state.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from repmedsam_ov.atomic import atomic_path
from repmedsam_ov.user_cache import cache_root

__all__ = ["default_state_dir", "save_atomic", "load_state", "rng_state", "set_rng_state", "JsonLog"]


def default_state_dir(stage: str) -> Path:
    return cache_root() / "train" / stage


def save_atomic(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_state(path: Path) -> dict:
    # Our own file: it holds optimizer/scheduler dicts and plain Python values, which weights_only allows.
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state() -> dict:
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class JsonLog:
    """Appends one JSON object per line to `log.jsonl` (rank 0 only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, **record) -> None:
        if self.path is None:
            return
        record.setdefault("time", round(time.time(), 3))
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
