"""Intensity preprocessing of raw volumes and images to the model's uint8 range, as the training data were made.

The challenge data (MedSAM's `pre_CT_MR.py`): CT is clipped to a window (default soft tissue, width 400 HU at
level 40) and the clipped volume min-max scaled to 0..255; MR, PET and everything else are clipped to the
0.5th and 99.5th percentiles of their non-zero voxels, min-max scaled to 0..255, and voxels that were 0 stay
0; both truncate to uint8. 2D RGB and grey 8-bit images are used as they are; 16-bit or float 2D images get
the percentile rule over all pixels. uint8 volumes are taken as already preprocessed unless a modality is
given. Imports numpy only.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError, UsageError

__all__ = ["WINDOWS", "MODALITIES", "choose_modality", "parse_window", "percentile_scale", "to_model_image",
           "to_model_volume", "window_ct"]

WINDOWS = {"soft-tissue": (400.0, 40.0), "lung": (1500.0, -600.0), "bone": (1800.0, 400.0)}  # (width, level) HU
MODALITIES = ("auto", "ct", "mr", "pet", "other", "none")
_HU_AIR = -500.0  # a volume whose minimum is below this is taken to be CT in Hounsfield units


def parse_window(text: str) -> tuple[float, float]:
    """'soft-tissue' | 'lung' | 'bone' | 'W,L' (width and level in HU) -> (width, level)."""
    if text in WINDOWS:
        return WINDOWS[text]
    try:
        width, level = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--window {text!r}: expected soft-tissue, lung, bone or WIDTH,LEVEL in HU (e.g. 400,40).") from None
    if not (np.isfinite(width) and np.isfinite(level) and width > 0):
        raise UsageError(f"--window {text!r}: the width must be a positive number of HU.")
    return width, level


def _scaled(clipped: np.ndarray) -> np.ndarray:
    lo, hi = float(clipped.min()), float(clipped.max())
    if hi <= lo:
        return np.zeros(clipped.shape, np.uint8)
    return ((clipped - lo) / (hi - lo) * 255.0).astype(np.uint8)


def window_ct(volume: np.ndarray, width: float, level: float) -> np.ndarray:
    """volume: HU, any shape -> uint8: clipped to [level - width/2, level + width/2], then min-max to 0..255."""
    return _scaled(np.clip(volume.astype(np.float64), level - width / 2, level + width / 2))


def percentile_scale(volume: np.ndarray, nonzero: bool = True) -> np.ndarray:
    """volume: any shape and real dtype -> uint8 clipped to its 0.5/99.5 percentiles (of non-zero voxels when
    `nonzero`, which then stay 0) and min-max scaled to 0..255."""
    values = volume[volume != 0] if nonzero else volume.ravel()
    if values.size == 0:
        return np.zeros(volume.shape, np.uint8)
    lo, hi = np.percentile(values, [0.5, 99.5])
    out = _scaled(np.clip(volume.astype(np.float64), lo, hi))
    if nonzero:
        out[volume == 0] = 0
    return out


def choose_modality(requested: str, volume: np.ndarray, dicom_modality: str | None) -> tuple[str, str]:
    """The modality to preprocess as ('ct', 'mr', 'pet', 'other' or 'none') and why (for the log)."""
    if requested != "auto":
        return requested, "--modality"
    if dicom_modality:
        found = {"CT": "ct", "MR": "mr", "PT": "pet"}.get(dicom_modality, "other")
        return found, f"DICOM Modality {dicom_modality}"
    if volume.dtype == np.uint8:
        return "none", "uint8 volume taken as already 0..255 (pass --modality to rescale it)"
    if float(volume.min()) < _HU_AIR:
        return "ct", f"intensities down to {float(volume.min()):g} look like Hounsfield units"
    return "other", f"intensities {float(volume.min()):g}..{float(volume.max()):g} are not Hounsfield units"


def to_model_volume(volume: np.ndarray, modality: str, window: tuple[float, float]) -> np.ndarray:
    """volume: any real dtype -> uint8 model intensities for the chosen modality (see the module docstring)."""
    if modality == "none":
        if volume.dtype != np.uint8:
            raise InputError(f"--modality none takes uint8 volumes (0..255); this one is {volume.dtype}.")
        return volume
    if modality == "ct":
        return window_ct(volume, *window)
    return percentile_scale(volume, nonzero=True)


def to_model_image(image: np.ndarray) -> np.ndarray:
    """A 2D image (H, W[, 3]) -> uint8: 8-bit as is, anything else by the percentile rule over all pixels."""
    return image if image.dtype == np.uint8 else percentile_scale(image, nonzero=False)
