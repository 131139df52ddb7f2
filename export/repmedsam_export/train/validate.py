"""Validation on the challenge-format eval set (`imgs/NAME.npz` + `gts/NAME.npz`), segmented as inference does.

With `repmedsam_export.pipeline.ReferencePipeline` present, every case is segmented by it: 2D with the
case's boxes, 3D by slice propagation (ARCHITECTURE.md §2). Without it, 2D cases are segmented the same
way here and 3D cases are scored on each object's middle slice only (the method is named in the result).
Per case: DSC (and NSD with `repmedsam_ov.metrics`) averaged over the labels present in `gts`; the run
keeps the model with the best mean case DSC.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

from repmedsam_ov.errors import InputError
from repmedsam_ov.io import load_case

from .samples import IMAGE_SIZE, preprocess

__all__ = ["eval_cases", "validate"]



def eval_cases(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Case files of `folder/imgs` that have a `folder/gts` twin; `limit` picks that many round-robin across
    modalities (the second `_` field of the name), in name order."""
    folder = Path(folder)
    cases = sorted(p for p in (folder / "imgs").glob("*.npz") if (folder / "gts" / p.name).is_file())
    if not cases:
        raise InputError(f"{folder}: no eval cases (expected imgs/NAME.npz with gts/NAME.npz).")
    if limit is None or limit >= len(cases):
        return cases
    by_mod: dict[str, list[Path]] = {}
    for p in cases:
        by_mod.setdefault(_modality(p), []).append(p)
    chosen: list[Path] = []
    while len(chosen) < limit:
        for queue in by_mod.values():
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return sorted(chosen)


def _modality(path: Path) -> str:
    parts = path.stem.split("_")
    return parts[1] if len(parts) > 1 else "unknown"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def _own_scores(segs, gts, spacing):
    labels = [v for v in np.unique(gts) if v]
    return float(np.mean([_dice(segs == v, gts == v) for v in labels])) if labels else 1.0, None


def _case_scores(segs: np.ndarray, gts: np.ndarray, spacing) -> tuple[float, float | None]:
    """(DSC, NSD) by the challenge's definitions via repmedsam_ov.metrics; (Dice, None) without it.
    spacing: (3,) mm for 3D, None for 2D."""
    try:
        from repmedsam_ov.metrics import evaluate_case
    except ImportError:
        return _own_scores(segs, gts, spacing)
    scores = evaluate_case(gts, segs, spacing if gts.ndim == 3 else None)
    return float(scores.dsc), float(scores.nsd)


@torch.no_grad()
def _segment_2d(model, image: np.ndarray, boxes: np.ndarray, device, chunk: int = 16) -> np.ndarray:
    """Fallback 2D inference (same semantics as the reference pipeline, decoder batched over boxes)."""
    hw = image.shape[:2]
    scale = IMAGE_SIZE / max(hw)
    new_hw = (int(hw[0] * scale + 0.5), int(hw[1] * scale + 0.5))
    emb = model.image_encoder(torch.from_numpy(preprocess(image))[None].to(device))
    boxes256 = np.array([[int(v * scale) for v in b] for b in boxes], dtype=np.float32)
    segs = np.zeros(hw, dtype=np.uint16 if len(boxes) > 255 else np.uint8)
    for start in range(0, len(boxes256), chunk):
        logits, _ = model.decode(emb, torch.from_numpy(boxes256[start: start + chunk]).to(device)[:, None])
        masks = (model.postprocess_masks(logits.float(), new_hw, hw)[:, 0] > 0).cpu().numpy()
        for i, m in enumerate(masks, start=start + 1):
            segs[m] = i
    return segs


def _middle_slices(model, case, gts, device) -> float:
    """Fallback for 3D: each object's middle slice segmented from its 2D box; mean per-object Dice."""
    scores = []
    for label, (x0, y0, z0, x1, y1, z1) in enumerate(case.boxes, start=1):
        z = int((z1 - z0) / 2 + z0)
        segs = _segment_2d(model, case.imgs[z], np.array([[x0, y0, x1, y1]]), device)
        scores.append(_dice(segs == 1, gts[z] == label))
    return float(np.mean(scores)) if scores else 1.0


def validate(model, folder: str | Path, limit: int | None = None, device="cpu") -> dict:
    """Segment and score the eval cases. model: a RepMedSAM (not DDP-wrapped); its train/eval mode is
    restored afterwards. -> {"dsc", "nsd" (None without metrics), "per_modality", "cases", "method", "seconds"}."""
    try:
        from ..pipeline import ReferencePipeline
    except ImportError:
        ReferencePipeline = None
    was_training, t0 = model.training, time.perf_counter()
    model.eval()
    # the reference pipeline feeds CPU tensors: score a CPU copy when training elsewhere
    ref_model = model if torch.device(device).type == "cpu" else copy.deepcopy(model).cpu()
    method = "reference pipeline (2D boxes, 3D slice propagation)" if ReferencePipeline else \
        "2D boxes; 3D middle slices only (no reference pipeline)"
    per_case: list[tuple[str, float, float | None]] = []
    try:
        for path in eval_cases(folder, limit):
            case = load_case(path)
            with np.load(Path(folder) / "gts" / path.name, allow_pickle=False) as npz:
                gts = npz["gts"]
            if ReferencePipeline is not None:
                pipeline = ReferencePipeline(ref_model)
                segs = (pipeline.segment_3d if case.is_3d else pipeline.segment_2d)(case.imgs, case.boxes)
                dsc, nsd = _case_scores(segs, gts, case.spacing)
            elif case.is_3d:
                dsc, nsd = _middle_slices(model, case, gts, device), None
            else:
                dsc, nsd = _case_scores(_segment_2d(model, case.imgs, case.boxes, device), gts, None)
            per_case.append((_modality(path), dsc, nsd))
    finally:
        model.train(was_training)
    by_mod: dict[str, list[float]] = {}
    for mod, dsc, _ in per_case:
        by_mod.setdefault(mod, []).append(dsc)
    nsds = [n for _, _, n in per_case if n is not None]
    return {"dsc": float(np.mean([d for _, d, _ in per_case])),
            "nsd": float(np.mean(nsds)) if len(nsds) == len(per_case) else None,
            "per_modality": {m: round(float(np.mean(v)), 4) for m, v in sorted(by_mod.items())},
            "cases": len(per_case), "method": method, "seconds": round(time.perf_counter() - t0, 1)}
