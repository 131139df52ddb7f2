"""Side-by-side benchmark of segmentation engines on the same cases, in one process.

Engines: runtime-f32 / runtime-bf16 / runtime-int8 (the C++ runtime), ov-python / ov-python-f32 (the plain
OpenVINO-Python loop of `baseline`, at OpenVINO's default precision or f32) and torch (the PyTorch reference,
imported lazily). Each engine is warmed up, then the cases run interleaved (case by case, engine by engine).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io import Case

__all__ = ["synthetic_volume", "run_bench", "Measurement", "peak_rss_during", "machine_facts", "checkout_commit"]

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_during(fn):
    """Run fn(); return (its result, peak resident bytes of this process sampled every 2 ms while it ran)."""
    peak, done = [_rss_bytes()], threading.Event()

    def sample():
        while not done.wait(0.002):
            peak[0] = max(peak[0], _rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = fn()
    finally:
        done.set()
        sampler.join()
    return result, max(peak[0], _rss_bytes())


@dataclass
class Measurement:
    engine: str
    case: str
    seconds: float
    peak_rss_mb: float
    segs: np.ndarray = field(repr=False)
    stage_seconds: dict = field(default_factory=dict)  # engines that report them (the C++ runtime): last run


def run_bench(engines: dict, cases: list[tuple[str, Case]], repeats: int = 1, progress=None) -> list[Measurement]:
    """Warm every engine on the smallest 2D case and the smallest 3D case (the runtime compiles what each kind
    needs on first use), then time each case on each engine (median of `repeats`)."""
    for is_3d in (False, True):
        kind = [case for _, case in cases if case.is_3d == is_3d]
        if kind:
            warm = min(kind, key=lambda c: c.imgs.size)
            for segment in engines.values():
                segment(warm)
    results = []
    for name, case in cases:
        for engine, segment in engines.items():
            times, peak, segs = [], 0, None
            for _ in range(repeats):
                start = time.perf_counter()
                segs, rss = peak_rss_during(lambda: segment(case))
                times.append(time.perf_counter() - start)
                peak = max(peak, rss)
            stages = dict(getattr(segment, "stage_seconds", {}))
            results.append(Measurement(engine, name, float(np.median(times)), peak / 2**20, segs, stages))
            if progress:
                progress(f"{name} {engine}: {results[-1].seconds:.2f} s")
    return results


def synthetic_volume(depth: int = 300, size: int = 512, objects: int = 6, seed: int = 0) -> Case:
    """A deterministic CT-like volume with ellipsoid objects and their 3D boxes (the scale case)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:depth, :size, :size]
    volume = (40 + 20 * np.sin(x / 17.0) * np.cos(y / 23.0)).astype(np.float32) * np.ones((depth, 1, 1), np.float32)
    boxes = []
    for i in range(objects):
        c = rng.uniform([depth * 0.2, size * 0.2, size * 0.2], [depth * 0.8, size * 0.8, size * 0.8])
        r = rng.uniform([depth * 0.05, size * 0.04, size * 0.04], [depth * 0.2, size * 0.12, size * 0.12])
        inside = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1
        volume[inside] = 120 + 20 * i
        zs, ys, xs = np.nonzero(inside)
        boxes.append([xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max()])
    volume += rng.normal(0, 6, volume.shape).astype(np.float32)
    imgs = np.clip(volume, 0, 255).astype(np.uint8)
    return Case(Path(f"synthetic_{depth}x{size}x{size}_{objects}obj"), imgs, np.array(boxes, np.int64),
                np.array([2.0, 0.8, 0.8]))


def machine_facts(threads: int | None) -> dict:
    import openvino as ov

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads or os.cpu_count(),
            "openvino": ov.get_version(), "version": importlib.metadata.version("repmedsam-ov"),
            "commit": checkout_commit()}


def checkout_commit(folder: str | os.PathLike = ".") -> str | None:
    """The short commit of the repmedsam-ov checkout that `folder` lies in (a benchmark run from a checkout), or
    None: outside one, or in another project's repository. Never asks git about site-packages."""
    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    top = git("rev-parse", "--show-toplevel")
    if not top or not (Path(top) / "python" / "repmedsam_ov" / "__init__.py").is_file():
        return None
    return git("rev-parse", "--short", "HEAD") or None
