"""`repmedsam-ov info`: versions, devices and what is installed."""

from __future__ import annotations

import json
import platform


def register(sub) -> None:
    p = sub.add_parser("info", help="versions of repmedsam-ov and OpenVINO, and the devices found")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def collect() -> dict:
    from .. import __version__, _core

    return {
        "repmedsam_ov": __version__,
        "openvino_built_against": _core.openvino_version(),
        "devices": _core.available_devices(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def run(args) -> int:
    facts = collect()
    if args.json:
        print(json.dumps(facts))
    else:
        for k, v in facts.items():
            print(f"{k}: {v}")
    return 0
