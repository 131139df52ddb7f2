"""Latency of `repmedsam-ov serve` as the page sees it: HTTP round trips to a real server process (the CLI, on
loopback), per precision, one server at a time.

    python benchmarks/serve_latency.py [--precisions auto,f32] [-t 2] [-m MODEL_DIR] [--json out.jsonl]

Three numbers per precision, medians of round trips:
- decoder only: a box on a slice already encoded (the image's embedding is kept, so only the decoder runs);
- first box on a new slice: encoder + decoder (each box on a slice or image not seen before; the process's
  first image, which also compiles the encoder for whole images, is left out);
- 3D walk: one object's box propagated through its slice range, cold (slices not yet encoded) and warm (the same
  walk again: decoder only), with the time per slice.
On the 2D example (512×512 nuclei) and an eval CT volume (63×512×512, AMOS: its organs' boxes as prompts).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from repmedsam_ov.bench import machine_facts

REPO = Path(__file__).resolve().parents[1]
NUCLEI = REPO / "examples" / "imgs" / "2DBox_Microscopy_StarDistDSB_img2d.npz"
CT = REPO.parent / "shared" / "data" / "eval" / "imgs" / "3DBox_CT_biomedparse_AMOS_amos_0018.npz"
TOKEN = "benchmark-token-0123"
_IMAGES = 5  # copies of the 2D image: the first warms up, the other 4 time a first box


class Server:
    """`repmedsam-ov serve FOLDER --port 0` in a subprocess; call(method, path, body) -> (seconds, JSON reply)."""

    def __init__(self, folder: Path, out: Path, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "repmedsam_ov", "serve", str(folder), "-o", str(out), "--port", "0",
             "--no-browser", "--token", TOKEN, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.base = self.process.stdout.readline().split()[1].split("/?")[0]

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[float, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            reply = json.loads(response.read())
        return time.perf_counter() - start, reply

    def walk(self, case: str, obj: int, z_min: int, z_max: int) -> float:
        start = time.perf_counter()
        _, job = self.call("POST", f"/api/cases/{case}/objects/{obj}/walk", {"z_min": z_min, "z_max": z_max})
        while job["state"] in ("queued", "running"):
            time.sleep(0.02)
            _, job = self.call("GET", f"/api/jobs/{job['id']}")
        assert job["state"] == "done", job
        return time.perf_counter() - start

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def measure(server: Server, repeats: int) -> dict:
    cases = {c["name"]: c["id"] for c in server.call("GET", "/api/cases")[1]["cases"]}
    ct = cases["ct.npz"]
    with np.load(NUCLEI) as c:
        boxes_2d = c["boxes"]
    with np.load(CT) as c:
        boxes_3d = c["boxes"]
    first_2d = []
    for i in range(_IMAGES):  # each copy of the image is its own case: its first box encodes it
        nuclei = cases[f"nuclei{i}.npz"]
        server.call("POST", f"/api/cases/{nuclei}/open")
        first_2d.append(server.call("POST", f"/api/cases/{nuclei}/objects", {"box": boxes_2d[0].tolist()})[0])
    first_2d = first_2d[1:]  # the first image also compiles the whole-CPU encoder, once per process
    decoder_2d = [server.call("POST", f"/api/cases/{nuclei}/objects", {"box": b.tolist()})[0]
                  for b in boxes_2d[1:repeats + 1]]
    server.call("POST", f"/api/cases/{ct}/open")
    walk_box = max(boxes_3d, key=lambda b: b[5] - b[2])  # the organ spanning most slices
    z_min, z_max = int(walk_box[2]), int(walk_box[5])
    spare = [z for z in range(63) if z < z_min or z > z_max][:repeats]  # slices the walk does not touch
    xy = [int(walk_box[0]), int(walk_box[1]), int(walk_box[3]), int(walk_box[4])]
    first_3d = [server.call("POST", f"/api/cases/{ct}/objects", {"box": xy, "z": z})[0] for z in spare]
    decoder_3d = [server.call("POST", f"/api/cases/{ct}/objects", {"box": xy, "z": spare[0]})[0]
                  for _ in range(repeats)]
    _, reply = server.call("POST", f"/api/cases/{ct}/objects", {"box": xy, "z": (z_min + z_max) // 2})
    obj = reply["object"]["id"]
    cold = server.walk(ct, obj, z_min, z_max)
    warm = server.walk(ct, obj, z_min, z_max)
    ms = lambda values: round(1000 * statistics.median(values), 1)  # noqa: E731
    return {"decoder_2d_ms": ms(decoder_2d), "decoder_3d_ms": ms(decoder_3d), "first_box_2d_ms": ms(first_2d),
            "first_box_3d_ms": ms(first_3d), "walk_slices": z_max - z_min + 1, "walk_cold_s": round(cold, 2),
            "walk_warm_s": round(warm, 2), "repeats": repeats}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precisions", default="auto,f32")
    p.add_argument("-t", "--threads", type=int, default=2)
    p.add_argument("-m", "--model", help="model folder (default: the bundled model)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", help="append one JSON line per precision to this file")
    args = p.parse_args()
    facts = machine_facts(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cases"
        folder.mkdir()
        for i in range(_IMAGES):
            shutil.copy(NUCLEI, folder / f"nuclei{i}.npz")
        shutil.copy(CT, folder / "ct.npz")
        print(f"{facts['cpu']}, {args.threads} threads, OpenVINO {facts['openvino']}, commit {facts['commit']}; "
              "medians of HTTP round trips")
        print(f"{'precision':<10} {'decoder 2D':>11} {'decoder 3D':>11} {'1st box 2D':>11} {'1st box 3D':>11} "
              f"{'walk cold':>16} {'walk warm':>16}")
        for precision in args.precisions.split(","):
            extra = ["--precision", precision, "-t", str(args.threads)] + (["-m", args.model] if args.model else [])
            server = Server(folder, Path(tmp) / f"out-{precision}", extra)
            try:
                r = measure(server, args.repeats)
            finally:
                server.close()
            n = r["walk_slices"]
            print(f"{precision:<10} {r['decoder_2d_ms']:>8.1f} ms {r['decoder_3d_ms']:>8.1f} ms "
                  f"{r['first_box_2d_ms']:>8.1f} ms {r['first_box_3d_ms']:>8.1f} ms "
                  f"{r['walk_cold_s']:>5.1f} s ({n} sl.) {r['walk_warm_s']:>5.1f} s ({n} sl.)")
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps({"precision": precision, **r, **facts}) + "\n")


if __name__ == "__main__":
    main()
