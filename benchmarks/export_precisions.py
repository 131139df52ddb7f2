"""Encoder/decoder latency at f32, bf16 and int8 on this CPU, and mask agreement of bf16 and int8 with f32.

Exports the checkpoint (f32 weights, plus an int8 encoder calibrated on the eval cases with every fifth case
held apart), then on every eval case (2D images; the middle slice of each 3D object) compares label maps
against f32. Prints one table and writes JSON lines. Medians of repeated runs in one process: this machine is
shared and noisy, so read ratios, not single times.

    python benchmarks/export_precisions.py [--checkpoint CKPT] [--cases DIR] [--model-dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import openvino as ov

from repmedsam_export.pipeline import box_to_model, preprocess
from repmedsam_export.quantize import _masks
from repmedsam_export.to_ir import export_model
from repmedsam_ov.io import load_case
from repmedsam_ov.metrics import label_agreement

SHARED = Path(__file__).resolve().parents[2] / "shared"


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def images_and_boxes(cases_dir: Path, max_boxes: int):
    for path in sorted(cases_dir.glob("*.npz")):
        case = load_case(path)
        if not case.is_3d:
            yield path.stem, case.imgs, case.boxes[:max_boxes]
            continue
        for i, b in enumerate(case.boxes):
            z = int((b[5] - b[2]) / 2 + b[2])
            yield f"{path.stem}#{i + 1}", case.imgs[z], b[None, [0, 1, 3, 4]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(SHARED / "golden" / "rep_medsam_random.pth"))
    ap.add_argument("--cases", default=str(SHARED / "data" / "eval" / "imgs"))
    ap.add_argument("--model-dir", help="reuse an exported folder (with encoder_int8.xml) instead of exporting")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--max-boxes", type=int, default=32, help="first boxes of each 2D case (nuclei cases have ~1000)")
    ap.add_argument("--max-samples", type=int, help="only the first N images/slices for the Dice comparison")
    ap.add_argument("--json", help="append JSON lines here")
    args = ap.parse_args()

    model_dir = Path(args.model_dir) if args.model_dir else Path(tempfile.mkdtemp()) / "model"
    if not args.model_dir:
        start = time.perf_counter()
        export_model(args.checkpoint, model_dir, int8=True, calib=[args.cases])
        print(f"export with int8 calibration: {time.perf_counter() - start:.0f} s")
    report = json.loads((model_dir / "quantization_report.json").read_text())

    core = ov.Core()
    threads = os.cpu_count()
    # int8 convolutions, the rest at the CPU's default precision (bf16 on AMX; f32 elsewhere, where bf16 is emulated)
    default = core.get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()
    configs = {
        "f32": ("encoder.xml", "f32"),
        "bf16": ("encoder.xml", "bf16"),
        "int8": ("encoder_int8.xml", default),
    }
    encoders = {k: core.compile_model(model_dir / f, "CPU", {"INFERENCE_PRECISION_HINT": p}) for k, (f, p) in configs.items()}
    decoders = {p: core.compile_model(model_dir / "decoder.xml", "CPU", {"INFERENCE_PRECISION_HINT": p})
                for p in {"f32", "bf16", default}}

    samples = list(images_and_boxes(Path(args.cases), args.max_boxes))[: args.max_samples]
    image = preprocess(samples[0][1])[0].numpy()
    embedding = encoders["f32"](image)[0]
    box = box_to_model(samples[0][2][0], samples[0][1].shape[:2])[None].astype(np.float32)
    boxes16 = np.repeat(box, 16, axis=0)

    rows = []
    reference = {name: _masks(encoders["f32"], decoders["f32"], img, bx)[1] for name, img, bx in samples}
    for key, (_, precision) in configs.items():
        enc_ms = median_ms(lambda: encoders[key](image), args.repeats)
        dec = decoders[precision]
        dec_ms = median_ms(lambda: dec({"embedding": embedding, "boxes": box}), args.repeats)
        dec16_ms = median_ms(lambda: dec({"embedding": embedding, "boxes": boxes16}), max(3, args.repeats // 3)) / 16
        dices = [float(np.mean(label_agreement(reference[name], _masks(encoders[key], dec, img, bx)[1], len(bx))))
                 for name, img, bx in samples]
        rows.append({"precision": key, "encoder_ms": enc_ms, "decoder_ms_per_box": dec_ms,
                     "decoder_ms_per_box_batch16": dec16_ms, "dice_vs_f32_mean": float(np.mean(dices)),
                     "dice_vs_f32_min": float(np.min(dices)), "samples": len(dices)})

    print(f"\nCPU {platform.processor() or platform.machine()} (default precision {default}), {threads} threads, "
          f"OpenVINO {ov.get_version()}, "
          f"{len(samples)} eval images/slices, int8 calibrated on {report['samples_used']} samples")
    print(f"{'precision':<9} {'encoder ms':>10} {'dec ms/box':>10} {'dec ms/box@16':>13} {'Dice vs f32 mean':>16} {'min':>7}")
    for r in rows:
        print(f"{r['precision']:<9} {r['encoder_ms']:>10.1f} {r['decoder_ms_per_box']:>10.1f} "
              f"{r['decoder_ms_per_box_batch16']:>13.1f} {r['dice_vs_f32_mean']:>16.4f} {r['dice_vs_f32_min']:>7.4f}")
    print(f"int8 report (held-out cases): {json.dumps(report['dice_int8_vs_f32'] | {'per_case': '...'})}, "
          f"embedding cosine {report['embedding_cosine']}")
    if args.json:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        with open(args.json, "a") as f:
            for r in rows:
                f.write(json.dumps(r | {"threads": threads, "openvino": ov.get_version(), "commit": commit,
                                        "checkpoint": args.checkpoint}) + "\n")


if __name__ == "__main__":
    main()
