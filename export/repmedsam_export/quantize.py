"""NNCF post-training int8 quantization of the encoder, calibrated on real slices, with its accuracy measured.

Calibration cases (challenge-format npz with `imgs` and `boxes`) are split by name: every fifth case is held
apart and used only to measure int8 against f32 (mask Dice per case, embedding cosine similarity).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import openvino as ov
import torch
import torch.nn.functional as F

from repmedsam_ov.errors import InputError, ModelError
from repmedsam_ov.io import load_case
from repmedsam_ov.metrics import label_agreement

from .pipeline import box_to_model, preprocess

__all__ = ["quantize_encoder", "prepare_calibration", "calibration_cases", "MIN_SAMPLES", "RECOMMENDED_SAMPLES", "MIN_MEAN_DICE"]

MIN_SAMPLES = 16
RECOMMENDED_SAMPLES = 300
MIN_MEAN_DICE = 0.98
SLICES_PER_VOLUME = 12
HOLD_OUT_EVERY = 5
log = logging.getLogger("repmedsam_ov")


def calibration_cases(folders) -> list[Path]:
    """Every *.npz under the folders that holds `imgs` (label files under a `gts` folder are skipped)."""
    paths = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise ModelError(f"{folder}: calibration folder not found.")
        paths += [p for p in sorted(folder.rglob("*.npz")) if "gts" not in p.parent.parts[-1:]]
    return paths


def _slices(case) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, boxes (N,4) in pixels) pairs: a 2D image, or evenly spread slices of a volume's boxed range."""
    if not case.is_3d:
        return [(case.imgs, case.boxes)]
    z_lo, z_hi = int(case.boxes[:, 2].min()), int(case.boxes[:, 5].max())
    picks = np.unique(np.linspace(z_lo, z_hi, num=min(SLICES_PER_VOLUME, z_hi - z_lo + 1)).round().astype(int))
    out = []
    for z in picks:
        inside = (case.boxes[:, 2] <= z) & (case.boxes[:, 5] >= z)
        out.append((case.imgs[z], case.boxes[inside][:, [0, 1, 3, 4]]))
    return out


def _load_split(folders):
    calib, held = [], []
    for i, path in enumerate(calibration_cases(folders)):
        try:
            case = load_case(path)
        except InputError as e:
            log.warning("skipping calibration case: %s", e)
            continue
        (held if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1 else calib).append((path.stem, _slices(case)))
    return calib, held


def _masks(encoder, decoder, image: np.ndarray, boxes: np.ndarray, chunk: int = 32):
    """Embedding and label map of one image with the given compiled encoder and decoder (boxes in chunks)."""
    tensor, new_hw = preprocess(image)
    embedding = encoder(tensor.numpy())[0]
    hw = image.shape[:2]
    boxes256 = np.stack([box_to_model(b, hw) for b in boxes]).astype(np.float32)
    labels = np.zeros(hw, np.uint16)
    for start in range(0, len(boxes256), chunk):
        logits = torch.from_numpy(decoder({"embedding": embedding, "boxes": boxes256[start:start + chunk]})[0])
        logits = F.interpolate(logits[:, None, : new_hw[0], : new_hw[1]], size=hw, mode="bilinear", align_corners=False)
        for i, mask in enumerate(logits[:, 0].numpy() > 0, start=start + 1):
            labels[mask] = i
    return embedding, labels


def _agreement(f32_encoder, int8_encoder, decoder, held) -> dict:
    dices, cosines = {}, []
    for name, slices in held:
        case_dices = []
        for image, boxes in slices:
            if len(boxes) == 0:
                continue
            e32, l32 = _masks(f32_encoder, decoder, image, boxes)
            e8, l8 = _masks(int8_encoder, decoder, image, boxes)
            cosines.append(float(np.dot(e32.ravel(), e8.ravel()) / (np.linalg.norm(e32) * np.linalg.norm(e8) + 1e-12)))
            case_dices += label_agreement(l32, l8, len(boxes))
        if case_dices:
            dices[name] = float(np.mean(case_dices))
    values = list(dices.values())
    return {
        "dice_int8_vs_f32": {"mean": float(np.mean(values)) if values else None,
                             "min": float(np.min(values)) if values else None, "per_case": dices},
        "embedding_cosine": {"mean": float(np.mean(cosines)) if cosines else None,
                             "min": float(np.min(cosines)) if cosines else None},
    }


def prepare_calibration(calib_folders) -> tuple[list, list]:
    """Load and split the calibration cases; refuse too few samples before any conversion work."""
    calib, held = _load_split(calib_folders)
    count = sum(len(slices) for _, slices in calib)
    if count < MIN_SAMPLES:
        raise ModelError(f"{', '.join(map(str, calib_folders))}: only {count} calibration samples "
                         f"({len(calib)} cases, {len(held)} more held apart for the accuracy check); int8 needs at "
                         f"least {MIN_SAMPLES} (aim for {RECOMMENDED_SAMPLES}+).")
    if count < RECOMMENDED_SAMPLES:
        log.warning("int8: only %d calibration samples (fewer than %d); accuracy may suffer.", count, RECOMMENDED_SAMPLES)
    return calib, held


def quantize_encoder(encoder: ov.Model, decoder: ov.Model, prepared: tuple[list, list], out_dir: Path, *,
                     info: dict, compress_to_fp16: bool = False) -> dict:
    """Write out_dir/encoder_int8.xml/.bin and out_dir/quantization_report.json; return the report.

    prepared: what prepare_calibration returned.
    """
    import nncf

    calib, held = prepared
    samples = [preprocess(image)[0].numpy() for _, slices in calib for image, _ in slices]
    quantized = nncf.quantize(encoder, nncf.Dataset(samples), subset_size=len(samples),
                              preset=nncf.QuantizationPreset.PERFORMANCE)

    core = ov.Core()
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    report = {"samples_used": len(samples), "calibration_cases": [n for n, _ in calib],
              "held_out_cases": [n for n, _ in held]}
    report.update(_agreement(core.compile_model(encoder, "CPU", f32), core.compile_model(quantized, "CPU", f32),
                             core.compile_model(decoder, "CPU", f32), held))
    mean_dice = report["dice_int8_vs_f32"]["mean"]
    report["accuracy_ok"] = mean_dice is not None and mean_dice >= MIN_MEAN_DICE
    report["default_encoder"] = "encoder_int8.xml" if report["accuracy_ok"] else "encoder.xml"
    if not report["accuracy_ok"]:
        log.warning("!!! int8 encoder FAILED its accuracy bound: mean mask Dice vs f32 = %s (< %.2f) on %d held-out "
                    "cases; encoder.xml (f32) stays the default.", mean_dice, MIN_MEAN_DICE, len(held))

    for key, value in dict(info, int8_accuracy_ok=str(report["accuracy_ok"]).lower()).items():
        quantized.set_rt_info(value, ["model_info", key])
    ov.save_model(quantized, out_dir / "encoder_int8.xml", compress_to_fp16=compress_to_fp16)
    (out_dir / "quantization_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
