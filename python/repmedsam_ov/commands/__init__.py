"""Subcommands of `repmedsam-ov`. Each module has `register(subparsers)` that adds its parser and sets `func`;
heavy imports (torch, OpenVINO) happen inside each command's `run`."""

from . import bench, evaluate, export, infer, info, serve, train

COMMANDS = [infer.register, serve.register, export.register, evaluate.register, bench.register, train.register,
            info.register]
