"""The exported box decoder against the official-layout decoder graph, side by side in one process.

Both graphs come from the same checkpoint and take the same inputs (one embedding, K boxes). "official layout"
runs SAM's mask decoder as written (embedding expanded to K copies, transposed-convolution upscaling, all four
mask tokens); "exported" is `to_ir.convert_decoder` (ir_wrappers.BoxDecoder: box-independent attention once per call, reassociated
image attention, token-major upscaling). Prints ms per box at each K (median of repeats, f32) and the largest
logit difference between the two, and writes JSON lines.

    python benchmarks/decoder_graph.py [--checkpoint CKPT] [--boxes 1,8] [--repeats 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from repmedsam_export.checkpoint import load_checkpoint
from repmedsam_export.to_ir import convert_decoder
from repmedsam_ov.bench import machine_facts

SHARED = Path(__file__).resolve().parents[2] / "shared"


class OfficialLayoutDecoder(torch.nn.Module):
    """The baseline: the prompt encoder and mask decoder called as SAM's predictor calls them."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, embedding, boxes):
        sparse, dense = self.model.prompt_encoder(boxes=boxes)
        pe = self.model.prompt_encoder.get_dense_pe()
        logits, iou = self.model.mask_decoder(embedding.expand(boxes.shape[0], -1, -1, -1), pe, sparse, dense)
        return logits[:, 0], iou[:, 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(SHARED / "golden" / "rep_medsam_random.pth"))
    ap.add_argument("--boxes", default="1,8", help="box counts per call (the runtime: 1 in 3D walks, 8 in 2D)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("-t", "--threads", type=int)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()

    model = load_checkpoint(args.checkpoint).eval()
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1}
    if args.threads:
        config["INFERENCE_NUM_THREADS"] = args.threads
    example = (torch.zeros(1, 256, 64, 64), torch.tensor([[1.0, 2, 30, 40], [5, 5, 60, 60], [0, 0, 256, 256]]))
    with torch.no_grad():
        baseline = ov.convert_model(OfficialLayoutDecoder(model).eval(), example_input=example,
                                    input=[([1, 256, 64, 64], ov.Type.f32), ([-1, 4], ov.Type.f32)])
    graphs = {"official layout": core.compile_model(baseline, "CPU", config),
              "exported": core.compile_model(convert_decoder(model), "CPU", config)}

    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(1, 256, 64, 64)).astype(np.float32)
    facts = machine_facts(args.threads)
    print(f"{facts['cpu']} | {facts['cores']} cores | OpenVINO {facts['openvino']} | f32 | commit {facts['commit']}")
    print(f"{'boxes/call':>10} {'graph':<16} {'ms/box':>8} {'speed-up':>9} {'max |logit diff|':>17}")
    for k in map(int, args.boxes.split(",")):
        xy = rng.uniform(0, 200, (k, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(8, 56, (k, 2))], axis=1).astype(np.float32)
        times, logits = {}, {}
        for name, compiled in graphs.items():
            request = compiled.create_infer_request()
            request.infer([embedding, boxes])  # warm-up
            samples = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                request.infer([embedding, boxes])
                samples.append((time.perf_counter() - start) * 1000 / k)
            times[name], logits[name] = statistics.median(samples), request.get_output_tensor(0).data.copy()
        diff = float(np.abs(logits["exported"] - logits["official layout"]).max())
        for name in graphs:
            speedup = times["official layout"] / times[name]
            print(f"{k:>10} {name:<16} {times[name]:>8.1f} {speedup:>8.2f}x {diff:>17.2e}")
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps({"boxes_per_call": k, "graph": name, "ms_per_box": times[name],
                                        "speedup": speedup, "max_logit_diff": diff} | facts) + "\n")


if __name__ == "__main__":
    main()
