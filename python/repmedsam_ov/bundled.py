"""The models shipped inside the package (`models/<name>/`: encoder and decoder IR plus `model.json`), and the
one rule by which `-m` / `Segmenter(model=...)` names a model: a folder, a bundled model's name, or None for
the default. Standard library only (no OpenVINO, no torch).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import ModelError

__all__ = ["DEFAULT_MODEL", "bundled_models", "bundled_model_dir", "model_card", "resolve_model_dir",
           "torch_checkpoint"]

MODELS = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "rep_medsam"
# a source checkout (an editable install): where model.json's torch_checkpoint lives; else the working directory
# (or one above it) when it is a clone
_PACKAGE_CHECKOUT = Path(__file__).resolve().parents[2]


def bundled_models() -> dict[str, Path]:
    """{name: folder} of every complete model shipped with this build, the default first."""
    found = {p.name: p for p in sorted(MODELS.iterdir()) if _complete(p)} if MODELS.is_dir() else {}
    return dict(sorted(found.items(), key=lambda kv: kv[0] != DEFAULT_MODEL))


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ("encoder.xml", "encoder.bin", "decoder.xml", "decoder.bin"))


def bundled_model_dir(name: str | None = None) -> Path | None:
    """The bundled model `name` (None: the default), or None when this build lacks it."""
    return bundled_models().get(name or DEFAULT_MODEL)


def model_card(folder: str | os.PathLike) -> dict:
    """The folder's model.json ({} when it has none): name, version, source, training data, licence, scores."""
    path = Path(folder) / "model.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: unreadable model card ({e}).") from None


def resolve_model_dir(model: str | os.PathLike | None = None, *, how: str = "model=MODEL_DIR") -> Path:
    """The model folder to use: an existing folder `model`; else the bundled model of that name; None: the
    default bundled model. The one rule for `Segmenter()`, the CLI and `info`; `how` says how to name a folder
    where the error is read (the CLI passes "-m MODEL_DIR"). ModelError when nothing fits. A name that is
    neither goes on as a folder path, so that the runtime's error names it."""
    names = bundled_models()
    if model is None:
        if DEFAULT_MODEL in names:
            return names[DEFAULT_MODEL]
        raise ModelError(f"no bundled model is installed in this build of repmedsam-ov; pass {how}, a folder "
                         "written by `repmedsam-ov export CHECKPOINT -o MODEL_DIR`.")
    path = Path(model)
    if not path.exists() and str(model) in names:
        return names[str(model)]
    if not path.exists() and os.sep not in str(model) and MODELS.is_dir() and (MODELS / str(model)).is_dir():
        raise ModelError(f"bundled model {model!r} is incomplete in this build (bundled: "
                         f"{', '.join(names) or 'none'}).")
    return path


def torch_checkpoint(folder: str | os.PathLike) -> Path:
    """The torch checkpoint a model folder was exported from, for `--backend torch` and `bench --engines
    torch`: model.json's `torch_checkpoint.path`, relative to the repository (a source checkout; wheels leave
    the 21 MB checkpoint out). ModelError naming the file, its sha256 and what to pass when it is not here."""
    card = model_card(folder)
    entry = card.get("torch_checkpoint")
    if not entry:
        raise ModelError(f"{folder}: its model.json names no torch checkpoint; pass --checkpoint CKPT.pth.")
    roots = [_PACKAGE_CHECKOUT, *(d for d in (Path.cwd(), *Path.cwd().parents) if (d / "pyproject.toml").is_file())]
    found = next((root / entry["path"] for root in roots if (root / entry["path"]).is_file()), None)
    if found is None:
        raise ModelError(f"{card.get('name', folder)}'s torch checkpoint {entry['path']} (sha256 "
                         f"{entry['sha256'][:12]}…) is in the repository, not in this installation: run from a "
                         "clone of the repository or pass --checkpoint with a copy of it.")
    if _sha256(found) != entry["sha256"]:
        raise ModelError(f"{found}: not the checkpoint {card.get('name', folder)} was exported from (sha256 "
                         f"expected {entry['sha256'][:12]}…, a clone at another version?); pass --checkpoint.")
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
