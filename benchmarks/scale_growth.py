"""How the C++ runtime's time and memory grow with slices and with objects, on the deterministic synthetic volume.

Runs `bench.synthetic_volume` (the 300x512x512, 6-object scale case of `repmedsam-ov bench --synthetic`) at
several depths with 6 objects, and at 300 slices with several object counts, one Segmenter for all. Prints seconds,
slices encoded, decoder calls, peak RSS and the stage breakdown (seconds summed over threads), and writes JSON
lines. Time should follow the work: encoder runs (distinct slices any object covers) plus decoder calls (the sum of
the objects' slice extents); memory should stay flat once the embedding cache is full.

    python benchmarks/scale_growth.py -m MODEL_DIR [--precision f32] [--depths 75,150,300] [--objects 1,3,6]
"""

from __future__ import annotations

import argparse
import json
import time

from repmedsam_ov import Segmenter
from repmedsam_ov.bench import machine_facts, peak_rss_during, synthetic_volume


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", required=True, help="model folder (repmedsam-ov export)")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("-t", "--threads", type=int)
    ap.add_argument("--depths", default="75,150,300", help="slice counts to run with 6 objects")
    ap.add_argument("--objects", default="1,3,6", help="object counts to run at 300 slices")
    ap.add_argument("--json", metavar="FILE", help="append one JSON line per run")
    args = ap.parse_args()

    seg = Segmenter(args.model, precision=args.precision, threads=args.threads)
    runs = [(int(d), 6) for d in args.depths.split(",")]
    runs += [(300, int(n)) for n in args.objects.split(",") if (300, int(n)) not in runs]
    facts = machine_facts(args.threads) | {"precision": seg.precision}
    print(f"{facts['cpu']} | {facts['cores']} cores | OpenVINO {facts['openvino']} | {seg.precision} | "
          f"commit {facts['commit']}")
    stages = ("preprocess", "encoder", "prompt", "decoder", "postprocess")
    print(f"{'slices':>6} {'objects':>7} {'s':>8} {'encodes':>7} {'decodes':>7} {'ms/encode+decode':>16} {'RSS MB':>7}  "
          + " ".join(f"{s:>11}" for s in stages))
    seg.segment(synthetic_volume(8, 512, 1))  # warm-up: compile-time allocations out of the first row
    for depth, objects in runs:
        case = synthetic_volume(depth, 512, objects)
        start = time.perf_counter()
        (_, trace), rss = peak_rss_during(lambda: seg.segment(case, return_trace=True))
        seconds = time.perf_counter() - start
        per_step = 1000 * seconds / (trace.encoder_runs + trace.decoder_calls)
        print(f"{depth:>6} {objects:>7} {seconds:>8.1f} {trace.encoder_runs:>7} {trace.decoder_calls:>7} "
              f"{per_step:>16.1f} {rss / 2**20:>7.0f}  " + " ".join(f"{trace.seconds[s]:>11.1f}" for s in stages),
              flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps({"slices": depth, "objects": objects, "seconds": seconds,
                                    "encoder_runs": trace.encoder_runs, "decoder_calls": trace.decoder_calls,
                                    "peak_rss_mb": rss / 2**20, "stage_seconds": trace.seconds} | facts) + "\n")


if __name__ == "__main__":
    main()
