"""The one folder repmedsam-ov keeps per-user caches in ($XDG_CACHE_HOME/repmedsam-ov, else ~/.cache/repmedsam-ov):
the LiteMedSAM teacher, OpenVINO's compiled networks, training state. Standard library only."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "repmedsam-ov"
