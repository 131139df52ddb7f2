"""Measured marks in a model folder's encoder.xml (`model_info` in the IR's rt_info) that the runtime's `auto`
reads: `bf16_accuracy_ok` "false" keeps `auto` off bf16 for that model even where the CPU computes bf16
natively, because its bf16 masks were measured too far from its f32 masks (`bf16_label_dice`, the mean label
Dice over an eval set, e.g. `benchmarks/model_card_eval.py --mark-bf16`)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from .atomic import atomic_path
from .errors import ModelError

__all__ = ["BF16_AGREEMENT_BOUND", "mark_bf16", "set_model_info"]

BF16_AGREEMENT_BOUND = 0.99  # issue 11: auto's masks must agree with f32's at label Dice >= 0.99


def mark_bf16(model_dir: str | os.PathLike, label_dice: float) -> bool:
    """Record bf16's measured agreement with f32 in MODEL_DIR/encoder.xml; -> whether bf16 is within the bound."""
    ok = label_dice >= BF16_AGREEMENT_BOUND
    set_model_info(Path(model_dir) / "encoder.xml",
                   {"bf16_accuracy_ok": str(ok).lower(), "bf16_label_dice": f"{label_dice:.5f}"})
    return ok


def set_model_info(xml: Path, values: dict[str, str]) -> None:
    """Set keys of the IR's rt_info/model_info in place (atomically); the weights file is not touched."""
    try:
        tree = ET.parse(xml)
    except (OSError, ET.ParseError) as e:
        raise ModelError(f"{xml}: cannot read it as an OpenVINO IR ({e}).") from None
    info = tree.getroot().find("rt_info/model_info")
    if info is None:
        raise ModelError(f"{xml}: no rt_info/model_info, so it is not a repmedsam-ov model.")
    for key, value in values.items():
        element = info.find(key)
        if element is None:
            element = ET.SubElement(info, key)
        element.set("value", value)
    with atomic_path(xml) as tmp:
        tree.write(tmp, encoding="utf-8", xml_declaration=True)
