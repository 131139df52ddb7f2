"""Measured marks in a model folder's encoder.xml (`model_info` in the IR's rt_info) that the runtime's `auto`
reads. `auto_amx`, `auto_avx512_bf16`, `auto_other` (with `auto_basis`, what was measured): the precision
`auto` runs this model at on CPUs of that class (AMX; AVX512-BF16; neither, where bf16 is emulated), the
fastest one whose every eval source scored within 0.01 DSC and NSD of f32 (`benchmarks/model_card_eval.py
--mark-auto`). Older folders: `bf16_accuracy_ok` "false" keeps `auto` off bf16 for that model, because its
bf16 masks were measured too far from its f32 masks (`bf16_label_dice`, `--mark-bf16`)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from .atomic import atomic_path
from .errors import ModelError

__all__ = ["BF16_AGREEMENT_BOUND", "CPU_CLASSES", "mark_auto", "mark_bf16", "set_model_info"]

BF16_AGREEMENT_BOUND = 0.99  # issue 11: auto's masks must agree with f32's at label Dice >= 0.99


def mark_bf16(model_dir: str | os.PathLike, label_dice: float) -> bool:
    """Record bf16's measured agreement with f32 in MODEL_DIR/encoder.xml; -> whether bf16 is within the bound."""
    ok = label_dice >= BF16_AGREEMENT_BOUND
    set_model_info(Path(model_dir) / "encoder.xml",
                   {"bf16_accuracy_ok": str(ok).lower(), "bf16_label_dice": f"{label_dice:.5f}"})
    return ok


CPU_CLASSES = ("amx", "avx512_bf16", "other")
_BF16 = ("bf16", "bf16-encoder")


def mark_auto(model_dir: str | os.PathLike, choices: dict[str, str], basis: str) -> None:
    """Record `auto`'s precision for each CPU class (all of CPU_CLASSES) in MODEL_DIR/encoder.xml."""
    if set(choices) != set(CPU_CLASSES):
        raise ValueError(f"choices for {sorted(choices)}: expected one per CPU class {CPU_CLASSES}")
    if choices["other"] in _BF16:
        raise ValueError(f"auto_other = {choices['other']}: CPUs without native bf16 would emulate it")
    set_model_info(Path(model_dir) / "encoder.xml",
                   {f"auto_{cls}": choice for cls, choice in choices.items()} | {"auto_basis": basis})


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
