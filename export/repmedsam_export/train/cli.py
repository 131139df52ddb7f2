"""What `repmedsam-ov train ACTION` runs once its arguments are parsed (the parser lives, torch-free, in
`repmedsam_ov/commands/train.py`). Prints one JSON summary line on stdout; progress goes to the log."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from repmedsam_ov.errors import UsageError

from .config import STAGES, TrainConfig

__all__ = ["run_action", "config_from_args"]

log = logging.getLogger("repmedsam_ov")


def config_from_args(args) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    return TrainConfig(stage=args.action, **values)


def run_action(args) -> int:
    if args.action in STAGES:
        from .loop import Trainer

        summary = Trainer(config_from_args(args)).run()
    elif args.action == "embed-teacher":
        summary = _embed_teacher(args)
    elif args.action == "build-cache":
        summary = _build_cache(args)
    elif args.action == "make-val":
        summary = _make_val(args)
    else:  # argparse only offers the actions above
        raise UsageError(f"train {args.action}: unknown action.")
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(summary))
    return 0


def _embed_teacher(args) -> dict:
    import torch

    from .data import open_source, select_subset
    from .loop import resolve_device
    from .ov_teacher import open_teacher
    from .state import default_state_dir
    from .teacher import embed_items

    if args.threads:
        torch.set_num_threads(args.threads)
    source = open_source(args.data)
    items = select_subset(source.items, args.subset, args.seed)
    teacher = open_teacher(args.teacher, args.threads, str(resolve_device(args.device)))
    out = Path(args.out).expanduser() if args.out else default_state_dir("teacher")
    size_gb = len(items) * 256 * 64 * 64 * 2 / 1e9
    log.info("embedding %d images with %s (%s) into %s (%.1f GB float16)", len(items), args.teacher,
             type(teacher).__name__, out, size_gb)
    every = max(1, len(items) // 100)
    embed_items(teacher, source, items, out, args.batch_size,
                log=lambda done, total: done % every == 0 and log.info("  %d/%d", done, total))
    return {"embeddings": str(out), "images": len(items)}


def _build_cache(args) -> dict:
    from .data import FolderSource, build_cache, open_source, select_subset

    source = open_source(args.data)
    if not isinstance(source, FolderSource):
        raise UsageError(f"{args.data}: already a cache; give the training folder (with manifest.csv).")
    items = select_subset(source.items, args.subset, args.seed)
    out = build_cache(source, args.out, items)
    return {"cache": str(out), "images": len(items), "bytes": out.stat().st_size}


def _make_val(args) -> dict:
    from .data import FolderSource, open_source
    from .val_split import calibration_names, write_val_folder

    source = open_source(args.data)
    if not isinstance(source, FolderSource):
        raise UsageError(f"{args.data}: a cache; give the training folder (with manifest.csv).")
    names = write_val_folder(source, args.out, calibration_names(source.items) if args.calib else None)
    return {"val": str(args.out), "cases": len(names), "3d": sum(n.startswith("3D") for n in names)}
