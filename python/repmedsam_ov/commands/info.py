"""`repmedsam-ov info`: versions, devices, the model `infer` uses without -m, and the precision `auto` picks."""

from __future__ import annotations

import json
import platform


def register(sub) -> None:
    p = sub.add_parser("info", help="versions, devices, the default model folder and the precision 'auto' picks")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def collect() -> dict:
    """Plain values only (the text and JSON outputs carry the same facts)."""
    from .. import __version__, _core
    from ..errors import ModelError
    from ..segmenter import bundled_model_dir, resolve_model_dir

    try:
        default = str(resolve_model_dir(None))
    except ModelError:
        default = None
    try:  # the bundled folder's int8 encoder (if any) takes part in the choice
        precision, reason = _core.auto_precision(default or "")
    except ModelError as e:
        precision, reason = None, str(e)
    return {
        "repmedsam_ov": __version__,
        "openvino_built_against": _core.openvino_version(),
        "devices": _core.available_devices(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "model_bundled": bundled_model_dir() is not None,
        "bundled_model": _bundled_name(),
        "default_model_dir": default,
        "auto_precision": precision,
        "auto_precision_reason": reason,
    }


def _bundled_name() -> str | None:
    """The bundled model's name and origin, from the model.json beside its IR."""
    from ..segmenter import bundled_model_dir

    folder = bundled_model_dir()
    if folder is None or not (folder / "model.json").is_file():
        return None
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    return f"{card['name']} ({card['source']})"


def run(args) -> int:
    facts = collect()
    if args.json:
        print(json.dumps(facts))
        return 0
    for k, v in facts.items():
        if k == "default_model_dir" and v is None:
            v = "none (no model is bundled: infer and bench need -m MODEL_DIR)"
        print(f"{k}: {v}")
    return 0
