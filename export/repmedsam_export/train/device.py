"""A distillation burst on a lent GPU machine (issue 11): what travels there and what comes back.

The device tool copies the working tree, at most 64 MiB with what a call carries, to a machine with torch,
numpy and OpenCV but none of our own dependencies and no network. So the trainer runs from the source tree
(PYTHONPATH=python:export), the teacher travels as LiteMedSAM's encoder alone in float16, the data as a
subset of the training cache sized to the room left, and the student comes back as its encoder in float16
(a returned file may hold 16 MiB). `export/train_on_device.sh` is the one prepared command:

    python -m repmedsam_export.train.device pack          # here: .devpack/ (git-ignored)
    device run: `bash export/train_on_device.sh 7`, carry [".devpack"], timeout_s 600
    python -m repmedsam_export.train.device merge FILES_AT/student_encoder_f16.pth -o init.pth   # here

`merge` joins that encoder with LiteMedSAM's prompt encoder and mask decoder into a Rep-MedSAM checkpoint for
`train distill --init` (stored targets, validation) or `train pipeline --init` on the CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch

from repmedsam_ov.atomic import write_bytes_atomic
from repmedsam_ov.errors import InputError, ModelError, UsageError

from ..checkpoint import load_checkpoint, load_state_dict
from .data import build_cache, open_source, select_subset
from .state import load_state, save_atomic

__all__ = ["TREE_LIMIT", "pack", "finish", "merge"]

TREE_LIMIT = 64 * 2**20  # the device tool's cap on the working tree plus carried paths
RETURN_LIMIT = 16 * 2**20  # its cap on one returned file
ENCODER = "image_encoder."


def _all_f16(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def _encoder_f16(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return _all_f16({k: v for k, v in state.items() if k.startswith(ENCODER)})


def tree_bytes(root: Path) -> int:
    """Bytes of what the device tool sends besides carried paths: tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((root / name.decode()).stat().st_size for name in listed if name and (root / name.decode()).is_file())


def pack(teacher: Path, data: Path, out: Path, root: Path, limit: int = TREE_LIMIT, seed: int = 0,
         min_images: int = 100) -> dict:
    """Write out/teacher_encoder_f16.pth and out/data.npz (the largest source-balanced subset that fits)."""
    out.mkdir(parents=True, exist_ok=True)
    teacher_file = out / "teacher_encoder_f16.pth"
    save_atomic(_encoder_f16(load_state_dict(teacher)), teacher_file)
    (out / "data.npz").unlink(missing_ok=True)
    tree = tree_bytes(root)
    room = limit - tree - teacher_file.stat().st_size - 2 * 2**20  # headers, later edits
    source = open_source(data)
    size = {item: sum(len(b) for b in source.raw(item)) for item in source.items}
    lo, hi = 0, len(source.items)  # largest n whose subset fits: subsets grow by appending (select_subset)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(size[i] for i in select_subset(source.items, mid, seed)) <= room:
            lo = mid
        else:
            hi = mid - 1
    if lo < min_images:
        raise UsageError(f"only {max(room, 0) / 2**20:.1f} MiB left for data beside the working tree "
                         f"({tree / 2**20:.1f} MiB) and the teacher: too little to train on.")
    items = select_subset(source.items, lo, seed)
    build_cache(source, out / "data.npz", items)
    total = tree + teacher_file.stat().st_size + (out / "data.npz").stat().st_size
    return {"images": len(items), "of": len(source.items), "sources": len({i.source for i in items}),
            "travels_mib": round(total / 2**20, 1), "limit_mib": limit / 2**20, "pack": str(out)}


def split_id(config: dict) -> str:
    """What a run validated on: the held-out training cases (val_split.py) by a hash of their names, else
    the validation folder's name, else its loss."""
    if config.get("held_out"):
        return "split:" + hashlib.sha1("\n".join(sorted(config["held_out"])).encode()).hexdigest()[:12]
    return f"folder:{Path(config['val']).name}" if config.get("val") else "loss"


def finish(state_dir: Path, out: Path, latest: bool = False) -> dict:
    """The run's best model in float16, its log and `progress.json` (score, split) into `out`, only when it
    improved: best.pth exists only for a model that beat where the run started (the trainer scores its --init
    first), and a committed progress.json of the same split must be beaten too, so each 21 MB commit of
    progress is an improvement. After a distillation the student's encoder alone (`student_encoder_f16.pth`,
    what a device returns; `merge` rejoins it with the teacher's decoder), after pipeline training or
    fine-tuning the whole model (`model_f16.pth`, a `train --init` checkpoint). `latest`: the state's latest
    model instead, unchecked (a device burst returns what it trained; never for export/progress).
    -> {"written": bool, ...}"""
    state = load_state(state_dir / "state.pt")
    config = state.get("config", {})
    stage = config.get("stage", "distill")
    record_file = out / "progress.json"
    committed = json.loads(record_file.read_text()) if record_file.is_file() else None
    split = split_id(config)
    if latest:
        best = {"model": state["model"], "epoch": state["epoch"], "score": state.get("best")}
    elif not (state_dir / "best.pth").is_file():
        return {"written": False, "why": f"{state_dir}: no model of this run beat where it started (no best.pth)"}
    else:
        best = torch.load(state_dir / "best.pth", map_location="cpu", weights_only=True)
        if committed and committed.get("split") == split and best["score"] <= committed["score"]:
            return {"written": False, "why": f"best validation {best['score']:.4f} does not beat the committed "
                                             f"{committed['score']:.4f} ({record_file})"}
    out.mkdir(parents=True, exist_ok=True)
    if stage == "distill":
        target, weights = out / "student_encoder_f16.pth", _encoder_f16(best["model"])
    else:
        target, weights = out / "model_f16.pth", _all_f16(best["model"])
    save_atomic({"model": weights, "stage": stage, "arch": config.get("arch", "rep_medsam"),
                 "epoch": best["epoch"], "step": state["step"]}, target)
    if stage == "distill" and target.stat().st_size > RETURN_LIMIT:
        raise UsageError(f"{target}: {target.stat().st_size} bytes, over the {RETURN_LIMIT} a returned file may hold.")
    log = state_dir / "log.jsonl"
    if log.is_file():
        (out / "log.jsonl").write_bytes(log.read_bytes())
    record = {"stage": stage, "split": split, "score": best["score"], "epoch": best["epoch"], "step": state["step"]}
    if not latest:
        write_bytes_atomic(record_file, (json.dumps(record, indent=1) + "\n").encode())
    return {"written": True, "model": str(target), "bytes": target.stat().st_size, **record}


def merge(student: Path, teacher: Path, out: Path) -> dict:
    """The student's encoder + the teacher's prompt encoder and mask decoder -> a Rep-MedSAM checkpoint."""
    encoder = {k: v.float() for k, v in load_state_dict(student).items() if k.startswith(ENCODER)}
    rest = {k: v.float() for k, v in load_state_dict(teacher).items() if not k.startswith(ENCODER)}
    save_atomic({"model": {**rest, **encoder}, "stage": "distill", "arch": "rep_medsam", "from": str(student)}, out)
    load_checkpoint(out, arch="rep_medsam")  # strict: every key of the model, with its shape
    return {"checkpoint": str(out), "encoder_keys": len(encoder), "other_keys": len(rest)}


def main(argv: list[str] | None = None) -> int:
    from repmedsam_ov.litemedsam_weights import default_path

    ap = argparse.ArgumentParser(prog="python -m repmedsam_export.train.device", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="action", required=True)
    p = sub.add_parser("pack", help="here: teacher encoder and a data subset that fit the device tree")
    p.add_argument("--teacher", type=Path, default=default_path())
    p.add_argument("--data", type=Path, default=Path("../shared/data/train"), help="training folder or cache")
    p.add_argument("-o", "--out", type=Path, default=Path(".devpack"))
    f = sub.add_parser("finish", help="the best student encoder (distill) or whole model (float16) and log into OUT, "
                                      "when it improved on the committed progress")
    f.add_argument("state", type=Path)
    f.add_argument("-o", "--out", type=Path, required=True)
    f.add_argument("--latest", action="store_true", help="the latest model, unchecked (a device burst's return)")
    m = sub.add_parser("merge", help="here: a Rep-MedSAM checkpoint from the returned encoder")
    m.add_argument("student", type=Path)
    m.add_argument("--teacher", type=Path, default=default_path())
    m.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        if args.action == "pack":
            root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                                       check=True).stdout.strip())
            result = pack(args.teacher, args.data, args.out, root)
        elif args.action == "finish":
            result = finish(args.state, args.out, args.latest)
        else:
            result = merge(args.student, args.teacher, args.out)
    except (InputError, ModelError, UsageError, FileNotFoundError) as e:
        print(f"repmedsam_export.train.device {args.action}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
