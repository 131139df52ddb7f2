"""`repmedsam-ov info`: versions, devices, the bundled models (the default one `infer` uses without -m), and the
precision `auto` picks for each on this CPU and why."""

from __future__ import annotations

import json
import platform


def register(sub) -> None:
    p = sub.add_parser("info", help="versions, devices, the bundled models and the precision 'auto' picks for each")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def collect() -> dict:
    """Plain values only (the text and JSON outputs carry the same facts)."""
    from .. import __version__, _core
    from ..bundled import DEFAULT_MODEL, bundled_models, model_card
    from ..errors import ModelError

    models = {}
    for name, folder in bundled_models().items():
        card = model_card(folder)
        try:  # the folder's measured choice (and its int8 encoder, if any) take part in auto
            precision, reason = _core.auto_precision(str(folder))
        except ModelError as e:
            precision, reason = None, str(e)
        models[name] = {"name": card.get("name", name), "version": card.get("version"), "dir": str(folder),
                        "default": name == DEFAULT_MODEL, "auto_precision": precision, "auto_precision_reason": reason}
    default = models.get(DEFAULT_MODEL)
    if default is None:
        precision, reason = _core.auto_precision("")
    return {
        "repmedsam_ov": __version__,
        "openvino_built_against": _core.openvino_version(),
        "devices": _core.available_devices(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "model_bundled": default is not None,
        "bundled_model": f"{default['name']} {default['version']}" if default else None,
        "default_model_dir": default["dir"] if default else None,
        "auto_precision": default["auto_precision"] if default else precision,
        "auto_precision_reason": default["auto_precision_reason"] if default else reason,
        "bundled_models": models,
    }


def run(args) -> int:
    facts = collect()
    if args.json:
        print(json.dumps(facts))
        return 0
    for k, v in facts.items():
        if k == "default_model_dir" and v is None:
            v = "none (no model is bundled: infer and bench need -m MODEL_DIR)"
        if k == "bundled_models":
            for name, m in v.items():
                print(f"bundled model {name}{' (default)' if m['default'] else ''}: {m['name']} {m['version']}, "
                      f"-m {name}; auto here: {m['auto_precision']} ({m['auto_precision_reason']})")
            continue
        print(f"{k}: {v}")
    return 0
