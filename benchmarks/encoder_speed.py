"""Per-slice image-encoder time of model folders side by side (Rep-MedSAM's RepViT against LiteMedSAM's
TinyViT: the paper's point is that RepViT encodes a slice ≥ 2× faster), at each precision, one process,
runs interleaved so that load on the machine hits every row alike.

    python benchmarks/encoder_speed.py repmedsam=MODEL_DIR litemedsam=MODEL_DIR --precisions f32,bf16 -t 2

Speed does not depend on the weights' values: a folder exported from the golden random checkpoint times
Rep-MedSAM exactly. Prints median ms per slice (batch 1) and each row's ratio to the first folder's at the
same precision.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import openvino as ov

from repmedsam_ov.bench import machine_facts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", metavar="NAME=DIR")
    p.add_argument("--precisions", default="f32")
    p.add_argument("-t", "--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()

    core = ov.Core()
    image = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    requests = {}
    for spec in args.models:
        name, folder = spec.split("=", 1)
        for precision in args.precisions.split(","):
            compiled = core.compile_model(f"{folder}/encoder.xml", "CPU", {
                "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": args.threads,
                "PERFORMANCE_HINT": "LATENCY"})
            request = compiled.create_infer_request()
            request.infer({0: image})  # warm-up
            requests[(name, precision)] = request
    times = {key: [] for key in requests}
    for _ in range(args.runs):
        for key, request in requests.items():
            start = time.perf_counter()
            request.infer({0: image})
            times[key].append(time.perf_counter() - start)
    facts = machine_facts(args.threads)
    print(f"{facts['cpu']}, {args.threads} threads, OpenVINO {facts['openvino']}, {args.runs} runs each (median)")
    first = args.models[0].split("=", 1)[0]
    for (name, precision), values in times.items():
        ms = 1000 * statistics.median(values)
        base = 1000 * statistics.median(times[(first, precision)])
        print(f"{name:<12} {precision:<5} {ms:8.1f} ms/slice   {ms / base:5.2f}x {first}")


if __name__ == "__main__":
    main()
