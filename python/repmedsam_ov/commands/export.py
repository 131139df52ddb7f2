"""`repmedsam-ov export`: checkpoint -> OpenVINO model folder. The torch side is imported only here, lazily."""

from __future__ import annotations

from ..errors import ModelError, UsageError


def register(sub) -> None:
    p = sub.add_parser("export", help="export a Rep-MedSAM checkpoint to an OpenVINO model folder",
                       description="Reparameterize and convert a checkpoint to MODEL_DIR (encoder.xml, decoder.xml).")
    p.add_argument("checkpoint", metavar="CHECKPOINT.pth")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="model folder to write (replaced if it exists)")
    p.add_argument("--int8", action="store_true", help="also write an NNCF int8 encoder (needs --calib)")
    p.add_argument("--calib", nargs="+", metavar="DIR", help="folders of challenge-format .npz cases for int8 calibration")
    p.add_argument("--fp16-weights", action="store_true", help="store weights as fp16 (half the size)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.int8 and not args.calib:
        raise UsageError("--int8 needs --calib DIR [DIR ...] (folders of challenge-format .npz cases).")
    if args.calib and not args.int8:
        raise UsageError("--calib is only used with --int8.")
    try:
        from repmedsam_export.to_ir import export_model
    except ImportError as e:
        raise ModelError(f"export needs the torch side ({e.name} is missing): pip install 'repmedsam-ov[export]'") from None
    export_model(args.checkpoint, args.output, fp16_weights=args.fp16_weights, int8=args.int8, calib=args.calib)
    print(args.output)
    return 0
